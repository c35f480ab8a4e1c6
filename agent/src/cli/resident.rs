//! Lets go of the pages that start-up touched, once the daemon has settled.
//!
//! Start-up runs code once (config, TLS, the command line, D-Bus and
//! Kubernetes set-up, the voter's log recovery and first election) that the
//! kernel then keeps mapped, and it maps up to 64 KiB of cached file around
//! every page touched: most of an idle daemon's memory were such
//! file-backed pages of the binary and of libc, libm and the loader. Once
//! the daemon is up, the executable's read-only mappings are marked for
//! random access (no read-ahead for the read-only data; Linux 6.18 here
//! reads executable code ahead anyway) and paged out, and the libraries'
//! clean read-only mappings dropped; what the idle loop uses comes back.
//!
//! On voters too: the first call after that (an acquire, an election)
//! faults its code back in from disk, once; measured by `lease_bench` as
//! "first acquire after that" (9-15 ms instead of 1.5 here).

use std::ffi::c_void;
use std::path::Path;
use std::ptr::NonNull;

use nix::sys::mman::{madvise, MmapAdvise};

/// One mapping of /proc/self/maps: where it is, whether it is writable,
/// and the file behind it.
#[derive(Debug, PartialEq, Eq)]
struct Mapping<'a> {
    start: usize,
    end: usize,
    writable: bool,
    path: &'a str,
}

/// A line of /proc/self/maps ("start-end perms offset dev inode path"),
/// or None for anything else.
fn parse_mapping(line: &str) -> Option<Mapping<'_>> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    // offset, device, inode; the path may be absent (anonymous memory).
    let path = fields.nth(3).unwrap_or("");
    Some(Mapping {
        start: usize::from_str_radix(start, 16).ok()?,
        end: usize::from_str_radix(end, 16).ok()?,
        writable: perms.contains('w'),
        path,
    })
}

/// What to do with one read-only file mapping.
#[derive(Debug, PartialEq, Eq)]
enum Release {
    /// The executable's: marked for random access and paged out
    /// (MADV_PAGEOUT: the page cache lets go too, so the kernel has fewer
    /// cached neighbours to map around the pages used again; it never
    /// loses what a page holds, so the relocated read-only data may be in
    /// the range).
    PageOut,
    /// A library's, holding only the file's own pages (code and read-only
    /// data of libc, libm, the loader; other processes map them too, so
    /// they cannot be paged out): dropped from this process only
    /// (MADV_DONTNEED); a page used again is a minor fault.
    Drop,
}

/// The shared objects every baton process loads at start (its DT_NEEDED
/// libraries and the loader). glibc never unloads them, so their mappings
/// stay where /proc/self/smaps said; a library loaded later (an NSS module)
/// could be unmapped and the range reused before the advice lands.
const LOADED_AT_START: [&str; 5] = [
    "libc.so.",
    "libm.so.",
    "libgcc_s.so.",
    "ld-linux-x86-64.so.",
    "ld-linux-aarch64.so.",
];

/// Whether `path` names a library every baton process loads at start.
fn loaded_at_start(path: &str) -> bool {
    Path::new(path)
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| LOADED_AT_START.iter().any(|lib| name.starts_with(lib)))
}

/// The read-only mappings to release in `smaps` (the format of
/// /proc/self/smaps: a mapping line, then its fields): every one of the
/// executable `exe`, and those of the libraries loaded with it that hold
/// no private copy (`Anonymous: 0 kB`; a library's relocated data does).
fn mappings_to_release<'a>(smaps: &'a str, exe: &Path) -> Vec<(Mapping<'a>, Release)> {
    let mut found = Vec::new();
    let mut current: Option<(Mapping<'_>, Release)> = None;
    for line in smaps.lines() {
        if let Some(anonymous) = line.strip_prefix("Anonymous:") {
            let Some((mapping, release)) = current.take() else {
                continue;
            };
            let clean = anonymous.trim().trim_end_matches("kB").trim() == "0";
            if release == Release::PageOut || clean {
                found.push((mapping, release));
            }
        } else if let Some(mapping) = parse_mapping(line) {
            current = if mapping.writable || mapping.end <= mapping.start {
                None
            } else if Path::new(mapping.path) == exe {
                Some((mapping, Release::PageOut))
            } else if loaded_at_start(mapping.path) {
                Some((mapping, Release::Drop))
            } else {
                None
            };
        }
    }
    found
}

/// Releases this process's start-up pages: its executable's read-only
/// mappings and the clean read-only mappings of the libraries loaded with
/// it; returns how many bytes of mappings were advised.
pub fn release_startup_pages() -> std::io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut advised = 0;
    for (mapping, release) in mappings_to_release(&smaps, &exe) {
        let Some(start) = NonNull::new(mapping.start as *mut c_void) else {
            continue;
        };
        let length = mapping.end - mapping.start;
        let advice: &[MmapAdvise] = match release {
            Release::PageOut => &[MmapAdvise::MADV_RANDOM, MmapAdvise::MADV_PAGEOUT],
            Release::Drop => &[MmapAdvise::MADV_DONTNEED],
        };
        for advice in advice {
            // SAFETY: the range is a whole read-only, file-backed mapping
            // of this process, from /proc/self/smaps; nothing unmaps it
            // (the executable, or a library loaded with it: see
            // LOADED_AT_START). RANDOM and PAGEOUT never change what memory
            // holds. DONTNEED only on a mapping that held none but the
            // file's own pages when smaps was read; being read-only, it
            // still does, and a page dropped comes back from the file as
            // it was.
            unsafe { madvise(start, length, *advice) }.map_err(std::io::Error::from)?;
        }
        advised += length;
    }
    Ok(advised)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KiB of this process's read-only mappings resident in memory
    /// (smaps): of its executable, and of libc.
    fn resident_kib() -> (u64, u64) {
        let exe = std::fs::read_link("/proc/self/exe").expect("own executable");
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let (mut of_exe, mut of_libc) = (0, 0);
        let mut counter: Option<&mut u64> = None;
        for line in smaps.lines() {
            if let Some(mapping) = parse_mapping(line) {
                counter = if mapping.writable {
                    None
                } else if Path::new(mapping.path) == exe {
                    Some(&mut of_exe)
                } else if mapping.path.contains("/libc.so.") {
                    Some(&mut of_libc)
                } else {
                    None
                };
            } else if let Some(kib) = line.strip_prefix("Rss:") {
                if let Some(total) = counter.as_deref_mut() {
                    *total += kib
                        .trim()
                        .trim_end_matches(" kB")
                        .parse::<u64>()
                        .expect("Rss kB");
                }
            }
        }
        (of_exe, of_libc)
    }

    /// Real madvise on this test binary (mapped by this process alone) and
    /// on libc (mapped by every process): both lose resident pages, and
    /// the code that runs next comes back from the file.
    #[test]
    fn releasing_lowers_the_resident_pages_of_the_executable_and_libc() {
        let (exe_before, libc_before) = resident_kib();
        let advised = release_startup_pages().expect("madvise");
        let (exe_after, libc_after) = resident_kib();
        assert!(advised > 0, "no mapping advised");
        // Without the advice resident pages only grow; with it, the code
        // run since (this test's, the other tests') came back already.
        assert!(
            exe_after < exe_before,
            "executable resident {exe_before} KiB before, {exe_after} KiB after"
        );
        assert!(
            libc_after < libc_before,
            "libc resident {libc_before} KiB before, {libc_after} KiB after"
        );
        // Still runs: code released comes back on use.
        assert_eq!(
            parse_mapping("10-20 r--p 0 0:0 0").map(|m| m.end),
            Some(0x20)
        );
    }

    /// /proc/self/smaps, trimmed to the fields read.
    const SMAPS: &str = "\
55d0a1a00000-55d0a1c00000 r--p 00000000 fd:01 131 /usr/bin/baton
Rss:                 812 kB
Anonymous:             0 kB
55d0a1c00000-55d0a2a00000 r-xp 00200000 fd:01 131 /usr/bin/baton
Anonymous:             0 kB
55d0a2a00000-55d0a2a80000 r--p 01000000 fd:01 131 /usr/bin/baton
Anonymous:           496 kB
55d0a2a80000-55d0a2a90000 rw-p 01080000 fd:01 131 /usr/bin/baton
Anonymous:            32 kB
55d0a3000000-55d0a3100000 rw-p 00000000 00:00 0 [heap]
Anonymous:           260 kB
7f1c2a000000-7f1c2a200000 r-xp 00028000 fd:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f1c2a200000-7f1c2a204000 r--p 00228000 fd:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:            16 kB
7f1c2a300000-7f1c2a310000 r-xp 00003000 fd:01 78 /usr/lib/x86_64-linux-gnu/libnss_files.so.2
Anonymous:             0 kB
7f1c2b000000-7f1c2b001000 rw-p 00000000 00:00 0
Anonymous:             4 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
";

    #[test]
    fn the_executable_is_paged_out_and_clean_start_up_libraries_dropped() {
        let chosen = mappings_to_release(SMAPS, Path::new("/usr/bin/baton"));
        assert_eq!(
            chosen
                .iter()
                .map(|(m, release)| (m.start, release))
                .collect::<Vec<_>>(),
            [
                // All of the executable's read-only mappings, the relocated
                // data too (paging out never loses a page's contents).
                (0x55d0a1a00000, &Release::PageOut),
                (0x55d0a1c00000, &Release::PageOut),
                (0x55d0a2a00000, &Release::PageOut),
                // libc's code; not its relocated data (a private copy would
                // be lost), not a library loaded later, not the vdso.
                (0x7f1c2a000000, &Release::Drop),
            ]
        );
    }

    #[test]
    fn lines_that_are_not_mappings_are_skipped() {
        assert_eq!(parse_mapping(""), None);
        assert_eq!(parse_mapping("zz-10 r--p 0 0:0 0 /x"), None);
        assert_eq!(
            parse_mapping("10-20 r--p 0 0:0 0"),
            Some(Mapping {
                start: 0x10,
                end: 0x20,
                writable: false,
                path: ""
            })
        );
    }
}
