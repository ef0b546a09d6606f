//! rvs-docgen: writes the man pages and shell completions of rvsd and rvsadm
//! from their clap descriptions (`rvs_control::cli`), for the Debian package.
//!
//! `rvs-docgen OUTDIR` writes OUTDIR/man/{rvsd,rvsadm}.8 and
//! OUTDIR/completions/{bash,zsh,fish}/... Not installed: a build tool.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use rvs_control::cli::{rvsadm_command, RvsdArgs};

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: rvs-docgen OUTDIR");
        return ExitCode::from(2);
    };
    match generate(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rvs-docgen: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

/// A man page section holding `text` as it is laid out (roff no-fill).
fn preformatted(title: &str, text: &str) -> String {
    let mut roff = format!(".SH {title}\n.nf\n");
    for line in text.lines() {
        let line = line.replace('\\', "\\e");
        // A line starting with . or ' would be a roff request.
        if line.starts_with('.') || line.starts_with('\'') {
            roff.push_str("\\&");
        }
        roff.push_str(&line);
        roff.push('\n');
    }
    roff.push_str(".fi\n");
    roff
}

fn generate(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    for cmd in [RvsdArgs::command(), rvsadm_command()] {
        let name = cmd.get_name().to_owned();
        let mut page = Vec::new();
        let man_page = clap_mangen::Man::new(cmd.clone()).section("8");
        if name == "rvsadm" {
            // ipvsadm's grammar is documented by its own -h text, kept as laid out.
            man_page.render_title(&mut page)?;
            man_page.render_name_section(&mut page)?;
            man_page.render_synopsis_section(&mut page)?;
            page.extend_from_slice(preformatted("DESCRIPTION", &rvs_control::ipvsadm::run::usage()).as_bytes());
            if let Some(after) = cmd.get_after_help() {
                page.extend_from_slice(preformatted("EXIT STATUS", &after.to_string()).as_bytes());
            }
        } else {
            man_page.render(&mut page)?;
        }
        std::fs::write(man.join(format!("{name}.8")), page)?;
        for (shell, dir, file) in
            [(Shell::Bash, "bash", name.clone()), (Shell::Zsh, "zsh", format!("_{name}")), (Shell::Fish, "fish", format!("{name}.fish"))]
        {
            let dir = out.join("completions").join(dir);
            std::fs::create_dir_all(&dir)?;
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), name.clone(), &mut text);
            std::fs::write(dir.join(file), text)?;
        }
    }
    Ok(())
}
