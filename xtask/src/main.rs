//! `cargo xtask`: the project's task runner (see the alias in `.cargo/config.toml`).
//!
//! - `setup`  installs what a fresh Debian bookworm machine needs (Debian's rustc-web toolchain
//!   with library source, llvm-22, bpf-linker 0.13.0, test tools) and mounts tracefs. Idempotent,
//!   and fast and quiet when everything is present.
//! - `build`  setup, then builds `pty-trace` (release unless `--debug`).
//! - `demo`   setup, release build, then runs `pty-trace demo` as root.
//! - `test`   setup, release build, then `cargo test` over the workspace as root.
//! - `bench`  setup, release build, then the `bench` binary of `pty-trace-tests`.
//! - `vmtest` setup, release build, then doctor and end-to-end tests in Debian kernels (5.10,
//!   6.1, 6.12, sid) booted under QEMU, per probe backend (`docs/vmtest.md`).
//!
//! Like cargo, xtask writes its own progress and summary lines to stderr: stdout belongs to the
//! programs it runs (`pty-trace demo` prints JSONL there when it is not a terminal).
//! `docs/toolchain.md` explains why the toolchain looks the way it does.

mod setup;
mod tasks;
mod util;
mod vmtest;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "pty-trace's task runner"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install missing Debian packages and bpf-linker, mount tracefs (idempotent).
    Setup,
    /// Setup, then build pty-trace (release by default) and print the binary's path.
    Build {
        /// Build the debug profile instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// Setup, release build, then run `pty-trace demo [ARGS...]` as root.
    Demo {
        /// Extra arguments for `pty-trace demo` (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, release build, then `cargo test --workspace` as root.
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, release build, then run the benchmark binary (`pty-trace-tests --bin bench`).
    Bench {
        /// Short run for smoke-testing the benchmark itself.
        #[arg(long)]
        quick: bool,
        /// Instead: both probe backends side by side in one boot of this Debian kernel (5.10,
        /// 6.1, 6.12, sid) under QEMU, written into docs/BENCHMARKS.md (ratios only).
        #[arg(long, value_name = "KERNEL", conflicts_with_all = ["quick", "args"])]
        vm: Option<String>,
        /// Extra arguments for the benchmark (after `--`), e.g. `soak --minutes 10`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, release build, then doctor and end-to-end tests in Debian kernels under QEMU.
    Vmtest(vmtest::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Setup => setup::run().map(|_| ()),
        Cmd::Build { debug } => tasks::build(!debug),
        Cmd::Demo { args } => tasks::demo(&args),
        Cmd::Test { args } => tasks::test(&args),
        Cmd::Bench { vm: Some(kernel), .. } => vmtest::bench::run(&kernel),
        Cmd::Bench { quick, args, vm: None } => tasks::bench(quick, &args),
        Cmd::Vmtest(opts) => vmtest::run(&opts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            // Pass a failed child's exit code through (e.g. cargo test's 101) where there is one.
            let code = err
                .downcast_ref::<util::CommandFailed>()
                .and_then(|f| f.code)
                .and_then(|c| u8::try_from(c).ok())
                .filter(|&c| c != 0)
                .unwrap_or(1);
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cmd {
        let argv = std::iter::once("xtask").chain(args.iter().copied());
        Cli::try_parse_from(argv)
            .map(|c| c.cmd)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn extra_args_pass_through_verbatim() {
        let Cmd::Test { args } = parse(&["test", "--", "-p", "x", "--", "--nocapture"]) else {
            panic!("not test")
        };
        assert_eq!(args, ["-p", "x", "--", "--nocapture"]);
        let Cmd::Demo { args } = parse(&["demo", "--", "--duration", "3s"]) else {
            panic!("not demo")
        };
        assert_eq!(args, ["--duration", "3s"]);
        let Cmd::Demo { args } = parse(&["demo"]) else {
            panic!("not demo")
        };
        assert!(args.is_empty());
    }

    #[test]
    fn flags() {
        assert!(matches!(
            parse(&["build", "--debug"]),
            Cmd::Build { debug: true }
        ));
        assert!(matches!(parse(&["build"]), Cmd::Build { debug: false }));
        assert!(matches!(
            parse(&["bench", "--quick"]),
            Cmd::Bench { quick: true, .. }
        ));
        assert!(Cli::try_parse_from(["xtask", "frobnicate"]).is_err());
    }

    #[test]
    fn vmtest_options() {
        let Cmd::Vmtest(vmtest::Options {
            kernels,
            backends,
            tests,
            full,
            timeout,
            ..
        }) = parse(
            &"vmtest --kernel 6.12,sid --kernel 5.10 --tests leaky --timeout 600"
                .split(' ')
                .collect::<Vec<_>>(),
        )
        else {
            panic!("not vmtest")
        };
        assert_eq!(kernels, ["6.12", "sid", "5.10"]);
        assert!(backends.is_empty());
        assert_eq!(tests, ["leaky"]);
        assert!(!full);
        assert_eq!(timeout, Some(600));
        assert!(Cli::try_parse_from(["xtask", "vmtest", "--full", "--tests", "x"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "vmtest", "--kvm", "--tcg"]).is_err());
    }
}
