//! Writes the man pages and shell completions of `baton` into a directory:
//! `cargo run -p baton --example gen_docs -- OUT_DIR`.
//!
//! - OUT_DIR/man/baton.1, with sections on exit status, environment, files
//!   and journal fields, and one page per subcommand (`baton-lease-acquire.1`);
//! - OUT_DIR/completions/baton.bash, _baton (zsh), baton.fish.
//!
//! packaging/build.sh runs it; the .deb installs the results.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;

use baton::{EXIT_CONFIG, EXIT_QUEUED, EXIT_UNAVAILABLE};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: gen_docs OUT_DIR");
        return ExitCode::from(2);
    };
    match generate(&PathBuf::from(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_docs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &Path) -> std::io::Result<()> {
    let man_dir = out.join("man");
    let completion_dir = out.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&completion_dir)?;

    // No `help` subcommand pages; display names become baton-lease-acquire etc.
    let mut command = baton::Cli::command().disable_help_subcommand(true);
    command.build();

    let mut main_page = BufWriter::new(File::create(man_dir.join("baton.1"))?);
    let man = Man::new(command.clone());
    man.render_title(&mut main_page)?;
    man.render_name_section(&mut main_page)?;
    man.render_synopsis_section(&mut main_page)?;
    man.render_description_section(&mut main_page)?;
    man.render_options_section(&mut main_page)?;
    man.render_subcommands_section(&mut main_page)?;
    main_page.write_all(extra_sections().as_bytes())?;
    man.render_version_section(&mut main_page)?;
    main_page
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    println!("{}", man_dir.join("baton.1").display());

    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        subcommand_pages(sub, &man_dir)?;
    }

    let mut completions = baton::Cli::command();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut completions, "baton", &completion_dir)?;
        println!("{}", path.display());
    }
    Ok(())
}

/// One page per (nested) subcommand, named after its display name.
fn subcommand_pages(command: &clap::Command, dir: &Path) -> std::io::Result<()> {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        subcommand_pages(sub, dir)?;
    }
    let path = Man::new(command.clone()).generate_to(dir)?;
    println!("{}", path.display());
    Ok(())
}

/// EXIT STATUS, ENVIRONMENT, FILES, JOURNAL FIELDS and SEE ALSO of baton(1).
fn extra_sections() -> String {
    format!(
        r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success.
.TP
\fB1\fR
Any other failure; the message on stderr says what failed.
.TP
\fB2\fR
Wrong command line.
.TP
\fB{unavailable}\fR
No voter could be reached (EX_UNAVAILABLE).
.TP
\fB{queued}\fR
\fBlease acquire\fR: queued, not granted (yet) (EX_TEMPFAIL).
.TP
\fB{config}\fR
The configuration is broken (EX_CONFIG); the message names the file, the
line and the key. The systemd unit does not restart on it
(\fBRestartPreventExitStatus={config}\fR).
.SH ENVIRONMENT
.TP
\fBRUST_LOG\fR
Log filter, e.g. \fBdebug\fR or \fBinfo,baton=debug\fR. Default: \fBinfo\fR for
\fBbaton agent\fR, \fBwarn\fR for the other commands.
.TP
\fBNOTIFY_SOCKET\fR, \fBWATCHDOG_USEC\fR
Set by systemd for \fBType=notify\fR services: \fBbaton agent\fR reports
READY=1, its phase in STATUS= (shown by \fBsystemctl status baton\fR), and
sends WATCHDOG=1 from its main loop.
.SH FILES
.TP
\fI/etc/baton/baton.toml\fR
The configuration.
.TP
\fI/etc/baton/baton.d/*.toml\fR
Local drop-ins, read after the configuration file, in name order.
.TP
\fI/usr/lib/baton/baton.d/*.toml\fR
Vendor drop-ins, read first; a local drop-in of the same name masks one.
.TP
\fI/var/lib/baton/\fR
State: the raft log, vote and lease state on voters, and the host agent's
phase, which survives the reboot it causes.
.SH "JOURNAL FIELDS"
Under systemd, \fBbaton agent\fR logs to the journal with SYSLOG_IDENTIFIER=baton
and, where they apply, these fields:
.TP
\fBBATON_PHASE\fR
The host agent's phase: idle, reboot-needed, waiting-for-lease, draining,
rebooting, post-reboot, undraining, releasing.
.TP
\fBBATON_GROUP\fR, \fBBATON_HOLDER\fR, \fBBATON_TOKEN\fR
The lease group, the holder (host name) and the grant's fencing token.
.TP
\fBBATON_LEADER\fR
The raft leader's node id, as seen by the voter that logs.
.PP
For example: \fBjournalctl \-u baton BATON_PHASE=rebooting\fR,
\fBjournalctl \-u baton BATON_GROUP=workers \-o json\fR.
.SH "SEE ALSO"
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBsystemd-sysext\fR(8),
/usr/share/doc/baton/README.md
"#,
        unavailable = EXIT_UNAVAILABLE,
        queued = EXIT_QUEUED,
        config = EXIT_CONFIG,
    )
}
