//! The scheduling priority of the store's background threads: the runner's writer
//! (`bedrock::TraceWriter`) and the WAL checkpoint thread (`sqlite::checkpoint`) run ten nice
//! steps below the process's main thread (as nice as the user started it), under the threads
//! that read the agents' streams, serve the simulator and draw the console.
//!
//! Nothing waits on a trace write the way a stream waits to be read: a turn waits for its commit
//! only at its end, and the writer commits everything queued meanwhile as one group. At the same
//! priority, each batch a turn handed over woke the writer at once, often in place of a thread
//! that was reading a stream, and it committed small groups: more WAL frames (the tail pages of
//! every table and index written again for each group) and more CPU per event. Below them, it
//! runs when they wait or by its (smaller) share, and takes larger groups. On the ingest bench
//! (README, Ingest) it wrote about a tenth fewer bytes per event and used less CPU per event.
//! It still has its share of the CPU under any load (nice 10 is about a tenth of nice 0's), so a
//! busy machine slows it but never stops it, and a full queue holds the turns back as before.
//! The sync thread, whose fsync an approval request waits for, keeps its creator's priority.

/// How many nice steps below the process's main thread a background thread runs.
pub const NICE_STEPS: i32 = 10;

/// Sets the calling thread's nice value `NICE_STEPS` above the main thread's (19 at most), the
/// same whichever thread calls it (the checkpoint thread is started by the writer's). On Linux
/// only (`setpriority` on the thread's id; elsewhere it would renice the whole process); where
/// it is refused the thread runs as it was, which is only slower.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpid, getpriority_process, setpriority_process};
        // On Linux a process's priority is its main thread's, whose id is the process id.
        let result = getpriority_process(Some(getpid())).and_then(|main| {
            setpriority_process(
                Some(rustix::thread::gettid()),
                main.saturating_add(NICE_STEPS).min(19),
            )
        });
        if let Err(e) = result {
            tracing::debug!(error = %e, "a background store thread keeps its priority");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The nice value of thread `tid` of this process, from `/proc` (field 19 of its stat).
    fn nice_of(tid: rustix::process::Pid) -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{}/stat", tid.as_raw_pid()))
            .unwrap_or_default();
        let after = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
        after
            .split(' ')
            .nth(16)
            .and_then(|n| n.parse().ok())
            .unwrap_or(i32::MIN)
    }

    #[test]
    fn a_background_thread_runs_ten_nice_steps_below_the_main_thread_whoever_starts_it() {
        let main = nice_of(rustix::process::getpid());
        let creator = nice_of(rustix::thread::gettid());
        let (first, second) = std::thread::spawn(|| {
            lower_this_thread();
            let first = nice_of(rustix::thread::gettid());
            // Started by a lowered thread (as the writer starts the checkpoint thread).
            let second = std::thread::spawn(|| {
                lower_this_thread();
                nice_of(rustix::thread::gettid())
            })
            .join()
            .unwrap();
            (first, second)
        })
        .join()
        .unwrap();
        assert_eq!(first, (main + NICE_STEPS).min(19));
        assert_eq!(second, first);
        // The caller's own priority is left alone.
        assert_eq!(nice_of(rustix::thread::gettid()), creator);
    }
}
