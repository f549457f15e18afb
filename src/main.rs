//! `mediabuild` binary: parse arguments, run, map the outcome to an exit code
//! (0 ok, 1 a negative answer, 2 an error). Everything else is in the library.

#![deny(unsafe_code)]

mod cli;

fn main() {
    let code = match cli::run() {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (e.g. `| head`) is not an error worth a message.
            if e.downcast_ref::<std::io::Error>().map(|e| e.kind())
                == Some(std::io::ErrorKind::BrokenPipe)
            {
                0
            } else {
                eprintln!("error: {}", cli::error_text(&e));
                2
            }
        }
    };
    std::process::exit(code);
}
