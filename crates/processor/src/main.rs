//! The Kafka stream processor (event-time windows, CDC analytics, compacted state topics)
//! arrives with its own issue; until then this binary says so instead of pretending to run.

fn main() -> std::process::ExitCode {
    eprintln!(
        "processor: not built yet — the stream processor is planned in a later issue; \
         nothing is consumed or produced by this binary"
    );
    std::process::ExitCode::from(2)
}
