//! Which live processes a run started, whatever they are called: the run puts a unique marker
//! in its environment, which everything it starts inherits (servers, their workers, the
//! helpers they fork), and `/proc/<pid>/environ` then tells them apart from every other
//! process on the machine. Used by the tests that check a benchmark leaves nothing behind.

/// Live (not zombie) processes whose environment holds `variable=marker`, with their command
/// lines.
pub fn marked_processes(variable: &str, marker: &str) -> Vec<(i32, String)> {
    let wanted = format!("{variable}={marker}");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()) {
            continue;
        }
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
            });
        if matches!(state.as_deref(), None | Some("Z") | Some("X")) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        found.push((pid, cmdline));
    }
    found
}
