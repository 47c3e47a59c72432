//! `flashpolicy-check HOST:PORT --from ORIGIN [...]`: would each client,
//! loaded from ORIGIN, connect to HOST:PORT, and which file and rule said
//! so? Exit status as a Nagios plugin: 0 OK, 1 WARNING, 2 CRITICAL, 3
//! UNKNOWN (bad arguments).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use flashpolicy_check::args::{Args, Check};
use flashpolicy_check::report::{self, Status};
use flashpolicy_check::run;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                Status::Unknown.code()
            } else {
                0 // --help, --version
            });
        }
    };
    let check = match Check::from_args(args) {
        Ok(check) => check,
        Err(e) => {
            println!("FLASHPOLICY UNKNOWN - {e}");
            return ExitCode::from(Status::Unknown.code());
        }
    };
    let results = run::run(&check);
    let status = report::overall(&check, &results);
    let output = if check.json {
        format!("{}\n", report::json(&check, &results))
    } else {
        report::text(&check, &results)
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::from(Status::Unknown.code());
    }
    ExitCode::from(status.code())
}
