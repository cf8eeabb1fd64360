#!/usr/bin/env python3
"""Exact instruction profile of the firmware from QEMU's execution log.

Usage: profile.py FIRMWARE.elf QEMU_LOG

QEMU_LOG is what `qemu-system-arm ... -d in_asm,exec,nochain -D QEMU_LOG` writes (a file or
a FIFO read while QEMU runs). `in_asm` lists the guest instructions of every translated block,
`exec` logs every execution of a block (`nochain` makes QEMU log each one, not only the
first of a chain), so the product gives the exact number of times each instruction ran.
The counts are properties of the program and its input, not of QEMU's timing; build the
firmware with LSOFTMAX_FIRMWARE_LIMIT=1 so one classification dominates the log.

Prints instructions per symbol, then, inside the hot functions (>= 1% of the run: infer-core's
kernels, inlined into `firmware_demo::infer::classify` or kept out of line), per source line
and per innermost loop, with cycles per iteration estimated by llvm-mca's Cortex-M4 model
when llvm-mca is available. Needs
llvm-objdump (PATH, a versioned llvm-objdump-NN, or rustup's llvm-tools component).
"""

import bisect
import collections
import glob
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from elf_report import sections  # noqa: E402

BRANCH = re.compile(
    r"b(ne|eq|lo|hi|lt|gt|ge|le|hs|ls|mi|pl|cc|cs|vs|vc)?(\.w)?\s+0x([0-9a-f]+)"
)
MAC = re.compile(r"^(smla\w*|mla|mul|smul\w*|smlal\w*|smlad\w*)\b")


def find_tool(name):
    """An LLVM tool: on PATH, versioned (name-NN), or in rustup's llvm-tools component."""
    if shutil.which(name):
        return name
    versioned = sorted(glob.glob(f"/usr/bin/{name}-[0-9]*"))
    if versioned:
        return versioned[-1]
    try:
        sysroot = subprocess.run(
            ["rustc", "--print", "sysroot"], capture_output=True, text=True, check=True
        ).stdout.strip()
        found = glob.glob(os.path.join(sysroot, "lib/rustlib/*/bin", name))
        if found:
            return found[0]
    except (OSError, subprocess.CalledProcessError):
        pass
    return None


def exec_counts(log_path):
    """Guest PC -> times executed."""
    blocks = {}  # host TB address -> guest PCs of its instructions
    counts = collections.Counter()
    listing, pending = None, None
    trace = re.compile(r"Trace \d+: (0x[0-9a-f]+) \[[0-9a-f]+/([0-9a-f]+)/")
    with open(log_path, "r", errors="replace") as f:
        for line in f:
            if line.startswith("IN:"):
                listing = []
            elif listing is not None and line.startswith("0x"):
                listing.append(int(line[:10], 16))
            elif line.startswith("Trace"):
                if listing:
                    pending = listing
                listing = None
                m = trace.match(line)
                if not m:
                    continue
                host, pc = m.group(1), int(m.group(2), 16)
                pcs = blocks.get(host)
                if pcs is None:
                    pcs = pending if pending and pending[0] == pc else [pc]
                    blocks[host] = pcs
                    pending = None
                for p in pcs:
                    counts[p] += 1
            elif line.startswith("----"):
                listing = None
    return counts


def symbols(elf_path):
    data = open(elf_path, "rb").read()
    secs = sections(data)
    out = []
    for st in (s for s in secs if s["type"] == 2):
        strtab = secs[st["link"]]
        for i in range(st["size"] // 16):
            off = st["off"] + i * 16
            name_off = int.from_bytes(data[off : off + 4], "little")
            value = int.from_bytes(data[off + 4 : off + 8], "little")
            size = int.from_bytes(data[off + 8 : off + 12], "little")
            if data[off + 12] & 0xF != 2 or size == 0:
                continue
            base = strtab["off"] + name_off
            name = data[base : data.index(b"\0", base)].decode(errors="replace")
            out.append((value & ~1, size, name))
    return sorted(out)


def demangle(names):
    tool = find_tool("llvm-cxxfilt")
    if not tool:
        return names
    r = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True)
    out = r.stdout.splitlines()
    return [re.sub(r"::h[0-9a-f]{16}$", "", n) for n in out] if len(out) == len(names) else names


def disassemble(objdump, elf, start, size):
    """[(pc, source 'file:line', instruction text)] with line info from DWARF."""
    r = subprocess.run(
        [objdump, "-d", "-l", "--no-show-raw-insn", f"--start-address={start:#x}",
         f"--stop-address={start + size:#x}", elf],
        capture_output=True, text=True, check=True,
    )
    rows, src = [], "?"
    for line in r.stdout.splitlines():
        m = re.match(r"; (/\S+):(\d+)", line)
        if m:
            src = f"{m.group(1).split('/')[-1]}:{m.group(2)}"
            continue
        m = re.match(r"\s*([0-9a-f]{7,8}):\s+(.*)", line)
        if m:
            rows.append((int(m.group(1), 16), src, m.group(2).split("@")[0].strip()))
    return rows


def mca_cycles(mca, body):
    """llvm-mca's cycles per iteration of a loop body (branches dropped)."""
    text = "\n".join(t for t in body if not BRANCH.match(t) and not t.startswith("b")) + "\n"
    r = subprocess.run(
        [mca, "-mtriple=thumbv7em-none-eabihf", "-mcpu=cortex-m4", "-iterations=100"],
        input=text, capture_output=True, text=True,
    )
    m = re.search(r"Total Cycles:\s+(\d+)", r.stdout)
    return int(m.group(1)) / 100 if m else None


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    elf, log = sys.argv[1], sys.argv[2]
    counts = exec_counts(log)
    syms = symbols(elf)
    total = sum(counts.values())
    by_sym = collections.Counter()
    starts = [s[0] for s in syms]
    for pc, n in counts.items():
        i = bisect.bisect_right(starts, pc) - 1
        name = syms[i][2] if i >= 0 and pc < syms[i][0] + syms[i][1] else "?"
        by_sym[name] += n
    top = by_sym.most_common(8)
    names = demangle([n for n, _ in top])
    print(f"whole run: {total:,} instructions executed (boot, calibration, model check, "
          f"one classification, printing)")
    for (_, n), name in zip(top, names):
        print(f"  {n:>13,}  {name}")

    objdump = find_tool("llvm-objdump")
    if not objdump:
        sys.exit("profile.py: llvm-objdump not found (rustup component add llvm-tools)")
    # Source lines and loops of the hot functions (those with >= 1% of all instructions); under
    # LTO they hold infer-core's inlined kernels.
    hot = [s for s in syms if by_sym[s[2]] >= total / 100]
    rows = []
    for start, size, _ in hot:
        rows += disassemble(objdump, elf, start, size)
    in_hot = sum(counts.get(pc, 0) for pc, _, _ in rows)
    print(f"\nhot functions ({in_hot:,} instructions); by source line (inlined code counts at its "
          f"innermost source line):")
    by_line = collections.Counter()
    for pc, src, _ in rows:
        by_line[src] += counts.get(pc, 0)
    for src, n in by_line.most_common(12):
        print(f"  {n:>13,}  {100 * n / max(in_hot, 1):5.1f}%  {src}")

    # Innermost loops: backward branches that enclose no other backward branch.
    loops = []
    for pc, _, text in rows:
        m = BRANCH.match(text)
        if m and int(m.group(3), 16) < pc:
            loops.append((int(m.group(3), 16), pc))
    inner = [
        (t, p) for t, p in loops
        if not any((t, p) != (t2, p2) and t <= t2 and p2 <= p for t2, p2 in loops)
    ]
    mca = find_tool("llvm-mca")
    stats = []
    for t, p in inner:
        body = [(pc, src, text) for pc, src, text in rows if t <= pc <= p]
        executed = sum(counts.get(pc, 0) for pc, _, _ in body)
        if executed == 0:
            continue
        iters = counts.get(p, 0)
        if iters == 0:  # the backward branch never ran: not a loop in this run
            continue
        macs = sum(1 for _, _, text in body if MAC.match(text))
        lines = collections.Counter(src for _, src, _ in body).most_common(2)
        stats.append((executed, t, p, iters, len(body), macs, body, lines))
    stats.sort(reverse=True)
    print("\nhottest innermost loops (instructions executed, share of the hot functions):")
    for executed, t, p, iters, n, macs, body, lines in stats[:6]:
        per_mac = f"{n / macs:.2f} instructions per multiply" if macs else "no multiplies"
        cyc = mca_cycles(mca, [text for _, _, text in body]) if mca else None
        cyc_s = f", llvm-mca {cyc:.0f} cycles/iter (+ ~2 for the taken branch)" if cyc else ""
        print(f"  {executed:>13,} {100 * executed / max(in_hot, 1):5.1f}%  {t:#x}..{p:#x}: "
              f"{iters:,} iterations x {n} instructions, {macs} multiplies ({per_mac}){cyc_s}; "
              f"mostly {', '.join(s for s, _ in lines)}")


if __name__ == "__main__":
    main()
