//! The timer hyper uses for the header read timeout.
//!
//! hyper moves a connection's header deadline at every request. With
//! hyper-util's `TokioTimer` each move is a reset on tokio's timer wheel,
//! which cost about 13% of the requests per second of `GET …/config/{name}`
//! under wrk (BENCHMARKS.md, "Serving connections"). A deadline here moves
//! by storing it; the tokio sleep
//! under it stays armed at its first deadline, and when that passes it is
//! armed again at the stored one. It fires on time and is moved on the
//! wheel at most once per timeout period, not once per request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct LazyTimer;

struct LazySleep {
    deadline: Instant,
    armed: Pin<Box<tokio::time::Sleep>>,
}

impl Sleep for LazySleep {}

impl Future for LazySleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            std::task::ready!(self.armed.as_mut().poll(cx));
            let deadline = self.deadline;
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            self.armed.as_mut().reset(deadline.into());
        }
    }
}

impl Timer for LazyTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(LazySleep {
            deadline,
            armed: Box::pin(tokio::time::sleep_until(deadline.into())),
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<LazySleep>() {
            // Earlier than it is armed for (never, as hyper uses it): arm it.
            Some(mut lazy) if deadline < lazy.armed.deadline().into_std() => {
                lazy.deadline = deadline;
                lazy.armed.as_mut().reset(deadline.into());
            }
            Some(mut lazy) => lazy.deadline = deadline,
            None => *sleep = self.sleep_until(deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fires no earlier than the latest deadline, however often it moved.
    #[tokio::test]
    async fn fires_at_the_latest_deadline() {
        let start = Instant::now();
        let timer = LazyTimer;
        let mut sleep = timer.sleep(Duration::from_millis(50));
        for step in 1..=4 {
            timer.reset(&mut sleep, start + Duration::from_millis(50 + 50 * step));
        }
        let latest = start + Duration::from_millis(250);
        tokio::time::timeout(Duration::from_secs(10), sleep.as_mut())
            .await
            .expect("the sleep fires");
        assert!(Instant::now() >= latest, "fired before its latest deadline");

        // Moved earlier than it is armed for, it fires then.
        let mut sleep = timer.sleep(Duration::from_secs(3600));
        timer.reset(&mut sleep, Instant::now() + Duration::from_millis(20));
        tokio::time::timeout(Duration::from_secs(10), sleep.as_mut())
            .await
            .expect("the sleep fires at the earlier deadline");
    }
}
