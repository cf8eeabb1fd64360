#!/usr/bin/env python3
"""Flash and RAM use of the firmware ELF, and infer-core's share of .text.

Usage: elf_report.py FIRMWARE.elf [MODEL_BYTES DIGITS_BYTES]

Reads the ELF32 section headers and symbol table directly (standard library only, no
binutils needed) and prints:

* flash: every allocated section that occupies file space (.vector_table, .text, .rodata,
  and .data's initial values, which live in flash and are copied to RAM at reset);
* static RAM: allocated sections in RAM (.data, .bss, .uninit); the stack comes on top and
  is measured by the firmware itself;
* infer-core's .text: the sizes of the function symbols whose (mangled) names contain
  `infer_core`, `serde`, `postcard`, or `13firmware_demo5infer` (the firmware's
  `infer` module, whose `#[inline(never)]` wrappers hold infer-core's inlined code under
  LTO). Shared compiler built-ins (memcpy, memset, 64-bit division) are not counted.

The last line is machine-readable: `ELF_REPORT flash=N ram_static=N infer_text=N`.
"""

import struct
import sys

FLASH = (0x0800_0000, 1024 * 1024)
RAM = (0x2000_0000, 128 * 1024)
SHF_ALLOC = 0x2
SHT_NOBITS = 8
SHT_SYMTAB = 2
STT_FUNC = 2
INFER_PATTERNS = (b"infer_core", b"serde", b"postcard", b"13firmware_demo5infer")


def sections(data):
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        sys.exit("elf_report: not a little-endian ELF32 file")
    (shoff,) = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    raw = []
    for i in range(shnum):
        raw.append(struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize))
    names_off = raw[shstrndx][4]

    def name(off, base=names_off):
        end = data.index(b"\0", base + off)
        return data[base + off : end].decode()

    out = []
    for s in raw:
        n, typ, flags, addr, off, size, link = s[0], s[1], s[2], s[3], s[4], s[5], s[6]
        out.append(
            {
                "name": name(n),
                "type": typ,
                "flags": flags,
                "addr": addr,
                "off": off,
                "size": size,
                "link": link,
                "entsize": s[9],
            }
        )
    return out


def in_region(addr, region):
    return region[0] <= addr < region[0] + region[1]


def main():
    if len(sys.argv) not in (2, 4):
        sys.exit(__doc__)
    data = open(sys.argv[1], "rb").read()
    secs = sections(data)
    # Zero-sized sections are listed too when they are the usual ones (.data is often empty).
    usual = {".vector_table", ".text", ".rodata", ".data", ".bss", ".uninit"}
    alloc = [
        s for s in secs if s["flags"] & SHF_ALLOC and (s["size"] > 0 or s["name"] in usual)
    ]
    flash = [s for s in alloc if s["type"] != SHT_NOBITS]
    ram = [s for s in alloc if in_region(s["addr"], RAM)]
    flash_total = sum(s["size"] for s in flash)
    ram_total = sum(s["size"] for s in ram)

    infer = 0
    for st in (s for s in secs if s["type"] == SHT_SYMTAB):
        strtab = secs[st["link"]]
        for i in range(st["size"] // 16):
            name_off, value, size, info, _, _ = struct.unpack_from(
                "<IIIBBH", data, st["off"] + i * 16
            )
            if info & 0xF != STT_FUNC or not in_region(value, FLASH):
                continue
            base = strtab["off"] + name_off
            name = data[base : data.index(b"\0", base)]
            if any(p in name for p in INFER_PATTERNS):
                infer += size

    def kib(n):
        return f"{n:,} B ({n / 1024:.1f} KiB)"

    print(f"flash       {kib(flash_total)} of 1024 KiB")
    for s in flash:
        print(f"  {s['name']:<14}{s['size']:>10,}")
    if len(sys.argv) == 4:
        model, digits = int(sys.argv[2]), int(sys.argv[3])
        print(f"  (.rodata holds the model, {model:,} B, and the digits, {digits:,} B)")
    print(f"RAM static  {kib(ram_total)} of 128 KiB (the stack comes on top)")
    for s in ram:
        print(f"  {s['name']:<14}{s['size']:>10,}")
    print(f"infer-core .text {kib(infer)} (goal <= 12 KiB; weights are in .rodata)")
    print(f"ELF_REPORT flash={flash_total} ram_static={ram_total} infer_text={infer}")


if __name__ == "__main__":
    main()
