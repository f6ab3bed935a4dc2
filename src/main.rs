// candle allocates and frees many short-lived buffers per forward pass; mimalloc halves a training
// step's time against glibc malloc on this machine (see PERF notes in README).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = match xmodal::cli::Cli::parse_with_config() {
        Ok(cli) => cli,
        Err(err) => {
            eprintln!("error: {err:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    xmodal::cli::init_tracing();
    match xmodal::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
