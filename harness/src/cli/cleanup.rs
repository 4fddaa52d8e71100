//! `netpolc cleanup [--run-id ID] [--provider P]... [--context C]`: removes what dead runs left,
//! provider by provider, and says what it removed, what it left and why.
//!
//! Exit status: 0 when everything attributable to a dead run (or to `--run-id`) is gone — live
//! runs and unattributable objects left alone are not failures; 2 for an invalid `--run-id`; 3
//! when something that should have gone could not be removed, or when a provider asked for with
//! `--provider` (or a `--context`) cannot be checked. A provider not asked for whose tool or
//! kubeconfig is missing is skipped, saying so.

use crate::provider::ProviderError;
use crate::provider::cleanup::{Report, Target};
use crate::provider::kind::cleanup as kind_cleanup;
use crate::provider::kubeconfig;
use crate::provider::lease::{self, LeaseDir};
use crate::provider::local;

use super::{CleanupArgs, ProviderKind, exit};

fn part_name(p: ProviderKind) -> &'static str {
    match p {
        ProviderKind::Local => "local",
        ProviderKind::Kind => "kind",
        ProviderKind::Kubeconfig => "kubeconfig",
    }
}

pub fn run(args: CleanupArgs) -> u8 {
    let target = match &args.run_id {
        Some(id) => match lease::check_run_id(id) {
            Ok(()) => Target::Run(id.clone()),
            Err(e) => {
                eprintln!("error: --run-id: {e}");
                return exit::BAD_INPUT;
            }
        },
        None => Target::DeadRuns,
    };
    let leases = LeaseDir::default_for_user();
    let parts = if args.providers.is_empty() {
        vec![
            ProviderKind::Local,
            ProviderKind::Kind,
            ProviderKind::Kubeconfig,
        ]
    } else {
        let mut p = args.providers.clone();
        p.dedup();
        p
    };
    let mut failed = false;
    let mut removed = 0;
    for part in parts {
        let name = part_name(part);
        let explicit = args.providers.contains(&part)
            || (part == ProviderKind::Kubeconfig && args.context.is_some());
        let result = match part {
            ProviderKind::Local => local::cleanup(&target, &leases),
            ProviderKind::Kind => kind_cleanup::cleanup(&target, &leases),
            ProviderKind::Kubeconfig => match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(kubeconfig::cleanup(
                    &target,
                    args.context.as_deref(),
                    &leases,
                )),
                Err(e) => Err(ProviderError::Failed(format!(
                    "cannot start the async runtime: {e}"
                ))),
            },
        };
        match result {
            Ok(report) => {
                removed += report.removed.len();
                failed |= !report.errors.is_empty();
                print_report(name, &report);
            }
            Err(e) if !explicit => println!("{name}: skipped: {}", skip_reason(&e)),
            Err(e) => {
                eprintln!("error: {name}: {}", skip_reason(&e));
                failed = true;
            }
        }
    }
    if removed == 0 && !failed {
        println!("nothing to remove");
    }
    if failed { exit::PREREQUISITE } else { exit::OK }
}

fn skip_reason(e: &ProviderError) -> String {
    match e {
        ProviderError::Prerequisite(m)
        | ProviderError::Failed(m)
        | ProviderError::InvalidInput(m) => m.clone(),
        ProviderError::Interrupted => "interrupted".into(),
    }
}

fn print_report(name: &str, r: &Report) {
    for x in &r.removed {
        println!("{name}: removed {x}");
    }
    for x in &r.left {
        println!("{name}: left {x}");
    }
    for x in &r.notes {
        println!("{name}: {x}");
    }
    for x in &r.errors {
        eprintln!("error: {name}: {x}");
    }
}
