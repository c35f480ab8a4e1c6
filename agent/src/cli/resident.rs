//! Lets go of the binary's pages that start-up touched, on a host that is not a voter.
//!
//! Start-up runs code once (config, TLS, the command line, D-Bus and
//! Kubernetes set-up) that the kernel then keeps mapped, and it maps 64 KiB
//! of the file around every page touched: 11.8 of an idle agent's 13.0 MiB
//! were such file-backed pages of the binary. Once the agent is up, the
//! executable's read-only mappings are marked for random access (no
//! read-ahead: a page used again comes back alone) and paged out; what the
//! idle loop uses comes back by itself.
//!
//! Not on voters: their call paths (an acquire, an election) would fault
//! their code back in during the call.

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
