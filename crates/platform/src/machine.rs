//! What a benchmark report says about the machine it ran on: the CPU, the load, and how much
//! CPU time the hypervisor gave to other guests while this one wanted it (steal).
//!
//! On a shared virtual machine steal swings from nothing to half the cores within an hour, and
//! every process here stalls with it at once; a report that does not give it cannot tell a
//! slower program from a busier host. Both benchmarks (`bench`, `gateway-bench`) read it here.

/// The CPU's model name from /proc/cpuinfo, or "unknown".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The 1, 5 and 15-minute load averages, as /proc/loadavg gives them, or "unknown".
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The machine's CPU time so far, summed over its cores, in clock ticks (/proc/stat's `cpu`
/// line): all of it, and the part stolen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    pub total: u64,
    pub stolen: u64,
}

impl CpuTicks {
    /// Now; `None` where the kernel does not count steal time.
    pub fn now() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal guest
    /// guest_nice. Guest time is already counted in user and nice, so it is not added again.
    fn parse(stat: &str) -> Option<Self> {
        let mut fields = stat.lines().next()?.split_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        let ticks: Vec<u64> = fields
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        (ticks.len() == 8).then(|| Self {
            total: ticks.iter().sum(),
            stolen: ticks[7],
        })
    }

    /// The percentage of the machine's CPU time stolen since `earlier`, if any time passed.
    pub fn stolen_percent_since(self, earlier: Self) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let stolen = self.stolen.checked_sub(earlier.stolen)?;
        (total > 0).then(|| 100.0 * stolen as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::CpuTicks;

    #[test]
    fn steal_is_the_eighth_field_of_the_cpu_line() {
        let stat =
            "cpu  4705 150 1120 16250 520 0 40 2103 0 0\ncpu0 2352 75 560 8125 260 0 20 1050 0 0\n";
        assert_eq!(
            CpuTicks::parse(stat),
            Some(CpuTicks {
                total: 4705 + 150 + 1120 + 16250 + 520 + 40 + 2103,
                stolen: 2103
            })
        );
        assert_eq!(
            CpuTicks::parse("cpu  4705 150 1120 16250\n"),
            None,
            "an old kernel"
        );
        assert_eq!(CpuTicks::parse("intr 1 2 3 4 5 6 7 8 9\n"), None);
        assert_eq!(CpuTicks::parse("cpu  1 2 3 4 5 6 7 x 9 10\n"), None);
    }

    #[test]
    fn the_stolen_share_is_of_the_time_that_passed() {
        let before = CpuTicks {
            total: 1000,
            stolen: 100,
        };
        let after = CpuTicks {
            total: 1400,
            stolen: 200,
        };
        assert_eq!(after.stolen_percent_since(before), Some(25.0));
        assert_eq!(before.stolen_percent_since(before), None, "no time passed");
        assert_eq!(before.stolen_percent_since(after), None, "not later");
    }
}
