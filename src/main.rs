//! The `loader-producer` binary: parses the command line, sets up logging, runs the chosen
//! command and turns its outcome into one summary line and an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use loader_producer::config::{parse_cli, Command, JobArgs, VerifyArgs};
use loader_producer::error::{LoaderError, Result};
use loader_producer::market::{Market, Venue};
use loader_producer::venue::Session;
use loader_producer::{lifecycle, verify};
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

/// Text logs on a terminal, JSON lines where logs are collected; returns whether they are JSON.
fn init_logging(debug: bool) -> bool {
    let default = if debug {
        "debug,librdkafka=info,hyper=info,reqwest=info"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stdout().is_terminal() {
        builder.init();
        false
    } else {
        builder.json().flatten_event(true).init();
        true
    }
}

fn main() -> ExitCode {
    let cli = parse_cli();
    let debug = match &cli.command {
        None => cli.job.debug,
        Some(Command::Run(a)) => a.debug,
        _ => false,
    };
    let json_logs = init_logging(debug);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            None => run_job(&cli.job).await,
            Some(Command::Run(args)) => run_job(&args).await,
            Some(Command::Verify(args)) => run_verify(&args).await,
            Some(Command::Demo(args)) => run_demo(&args).await,
            Some(Command::Schema(args)) => write_schemas(&args),
        }
    });
    let code = match outcome {
        Ok(()) => 0,
        Err(e) => {
            let code = e.exit_code();
            if code == 0 {
                eprintln!("{e}");
            } else if json_logs {
                // Where logs are collected, one JSON line says it.
                tracing::error!(exit_code = code, "{e}");
            } else {
                eprintln!("error: {e}");
            }
            code
        }
    };
    // Every record and event is acknowledged or reported by now; librdkafka's teardown of idle
    // clients would only add a few hundred milliseconds to every Job.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code)
}

async fn run_job(args: &JobArgs) -> Result<()> {
    lifecycle::run(args).await
}

#[cfg(feature = "demo")]
async fn run_demo(args: &loader_producer::config::DemoArgs) -> Result<()> {
    loader_producer::demo::run(args).await
}

#[cfg(not(feature = "demo"))]
async fn run_demo(_: &loader_producer::config::DemoArgs) -> Result<()> {
    Err(LoaderError::config(
        "this build of loader-producer has no demo (built without the `demo` cargo feature); \
         run `cargo run --release -- demo` from the source tree",
    ))
}

/// `loader-producer schema`: every record kind's JSON Schema, printed or written to files.
fn write_schemas(args: &loader_producer::config::SchemaArgs) -> Result<()> {
    use loader_producer::schema;
    let Some(out) = &args.out else {
        println!("{}", schema::file_text(&schema::document()).trim_end());
        return Ok(());
    };
    let dir = out.join(format!("v{}", schema::VERSION));
    let failed = |e: std::io::Error| {
        LoaderError::config(format!(
            "--out {}: cannot write the schemas: {e}",
            out.display()
        ))
    };
    std::fs::create_dir_all(&dir).map_err(failed)?;
    for s in schema::all() {
        let path = dir.join(format!("{}.json", s.name));
        std::fs::write(&path, schema::file_text(&s.schema)).map_err(failed)?;
        println!("{}", path.display());
    }
    Ok(())
}

async fn run_verify(args: &VerifyArgs) -> Result<()> {
    let kafka = args.kafka.resolve()?;
    let topic = args
        .kafka_topic
        .clone()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            LoaderError::config(
                "KAFKA_TOPIC is not set: name the topic to verify (flag --kafka-topic)",
            )
        })?;
    let mut expect = args.expectation()?;
    // A session of the venue and market, or why there is none (reported as unchecked).
    let connect = |(venue, market): (Venue, Market), symbols: Vec<String>| async move {
        let spec = loader_producer::venues::spec(venue);
        let settings = args.venue_settings(venue, market)?;
        let archive = args.archive_config(venue)?;
        let session: std::result::Result<Arc<dyn Session>, LoaderError> =
            loader_producer::venues::connect(venue, &settings, &symbols, archive)
                .await
                .map_err(|e| {
                    LoaderError::Exchange(format!(
                        "{} could not be asked at {} {} ({e})",
                        venue.title(),
                        spec.rest_url(market).var,
                        settings.api_url
                    ))
                });
        Ok::<_, LoaderError>(session.map_err(|e| e.to_string()))
    };
    // Whether a range reaches past the present is judged by the exchange's clock, as the loader
    // judged it when it cut the range. Without SYMBOL the symbols are learnt from the topic, and
    // the local clock judges (a connection checks its symbols).
    let mut early = None;
    if !args.offline && expect.range.is_some() && !expect.symbols.is_empty() {
        let home = (expect.home_venue, expect.home_market);
        let ex = connect(home, expect.symbols.clone()).await?;
        expect.now_ms = ex.as_ref().ok().map(|ex| ex.clock().now_ms());
        early = Some((home, ex));
    }
    let (k, t, e) = (kafka.clone(), topic.clone(), expect.clone());
    let mut report = tokio::task::spawn_blocking(move || verify::verify_topic(&k, &t, &e))
        .await
        .map_err(|e| LoaderError::Other(e.to_string()))??;
    if !args.offline && report.needs_exchange() {
        // Gaps and empty groups are looked up at the exchange of their market: what it lacks
        // too is no loss.
        for market in report.markets_to_ask() {
            let symbols: Vec<String> = report
                .groups
                .iter()
                .filter(|g| (g.exchange, g.market) == market)
                .map(|g| g.symbol.clone())
                .collect();
            let ex = match early.take() {
                Some((m, ex)) if m == market => ex,
                other => {
                    early = other;
                    connect(market, symbols).await?
                }
            };
            // What cannot be asked is unchecked, which fails the verdict; never an exchange gap.
            report
                .ask_exchange(market, ex.as_ref().map_err(String::clone))
                .await;
        }
    }
    if args.offline {
        report.note_offline_edges();
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
    } else {
        print!("{}", report.render());
    }
    if report.ok() {
        Ok(())
    } else {
        Err(LoaderError::Verify(format!(
            "topic {} failed verification",
            report.topic
        )))
    }
}
