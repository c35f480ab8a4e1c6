//! Lets go of the binary's pages that start-up touched, once the daemon has settled.
//!
//! Start-up runs code once (config, TLS, the command line, D-Bus and
//! Kubernetes set-up, the voter's log recovery and first election) that the
//! kernel then keeps mapped, and it maps up to 64 KiB of cached file around
//! every page touched: most of an idle daemon's memory were such
//! file-backed pages of the binary. Once the daemon is up, the executable's
//! read-only mappings are marked for random access (no read-ahead for the
//! read-only data; Linux 6.18 here reads executable code ahead anyway) and
//! paged out; what the idle loop uses comes back by itself.
//!
//! On voters too: the first call after that (an acquire, an election)
//! faults its code back in from disk, once; measured by `lease_bench` as
//! "first acquire after that" (3-4 ms instead of 1.5).

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

/// The read-only mappings of `exe` in `maps` (text, read-only data).
fn read_only_mappings_of<'a>(maps: &'a str, exe: &Path) -> Vec<Mapping<'a>> {
    maps.lines()
        .filter_map(parse_mapping)
        .filter(|m| !m.writable && m.end > m.start && Path::new(m.path) == exe)
        .collect()
}

/// Pages out this process's read-only mappings of its own executable;
/// returns how many bytes were advised.
pub fn release_startup_pages() -> std::io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut advised = 0;
    for mapping in read_only_mappings_of(&maps, &exe) {
        let Some(start) = NonNull::new(mapping.start as *mut c_void) else {
            continue;
        };
        let length = mapping.end - mapping.start;
        for advice in [MmapAdvise::MADV_RANDOM, MmapAdvise::MADV_PAGEOUT] {
            // SAFETY: the range is a whole read-only, file-backed mapping of
            // this process (from /proc/self/maps, nothing unmaps it: it is
            // the executable). Neither advice changes what the memory
            // holds: a page paged out is read again from the file on use.
            unsafe { madvise(start, length, advice) }.map_err(std::io::Error::from)?;
        }
        advised += length;
    }
    Ok(advised)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KiB of this process's executable resident in memory (smaps).
    fn executable_rss_kib() -> u64 {
        let exe = std::fs::read_link("/proc/self/exe").expect("own executable");
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut in_exe = false;
        let mut total = 0;
        for line in smaps.lines() {
            if let Some(mapping) = parse_mapping(line) {
                in_exe = Path::new(mapping.path) == exe;
            } else if let Some(kib) = line.strip_prefix("Rss:") {
                if in_exe {
                    total += kib
                        .trim()
                        .trim_end_matches(" kB")
                        .parse::<u64>()
                        .expect("Rss kB");
                }
            }
        }
        total
    }

    /// Real madvise on this test binary (mapped by this process alone):
    /// its pages leave, and the code that runs next comes back from the file.
    #[test]
    fn paging_out_the_executable_lowers_its_resident_pages() {
        let before = executable_rss_kib();
        let advised = release_startup_pages().expect("madvise");
        let after = executable_rss_kib();
        assert!(advised > 0, "no mapping of the executable advised");
        assert!(
            after < before / 2,
            "executable resident {before} KiB before, {after} KiB after"
        );
        // Still runs: code paged out comes back on use.
        assert_eq!(
            parse_mapping("10-20 r--p 0 0:0 0").map(|m| m.end),
            Some(0x20)
        );
    }

    const MAPS: &str = "\
55d0a1a00000-55d0a1c00000 r--p 00000000 fd:01 131 /usr/bin/baton
55d0a1c00000-55d0a2a00000 r-xp 00200000 fd:01 131 /usr/bin/baton
55d0a2a00000-55d0a2a10000 rw-p 01000000 fd:01 131 /usr/bin/baton
55d0a3000000-55d0a3100000 rw-p 00000000 00:00 0 [heap]
7f1c2a000000-7f1c2a200000 r-xp 00028000 fd:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1c2b000000-7f1c2b001000 rw-p 00000000 00:00 0
";

    #[test]
    fn only_the_executables_read_only_mappings_are_chosen() {
        let chosen = read_only_mappings_of(MAPS, Path::new("/usr/bin/baton"));
        assert_eq!(
            chosen.iter().map(|m| (m.start, m.end)).collect::<Vec<_>>(),
            [
                (0x55d0a1a00000, 0x55d0a1c00000),
                (0x55d0a1c00000, 0x55d0a2a00000)
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
