"""Entry point: ``python -m evalwatt.sampling`` (see evalwatt.sampling.sampler)."""

import signal
import sys

# Before any import starts a thread (pyarrow's pools): a thread that does not block the job's
# signals (a mark, dense reads, SIGUSR2: a new trace part) could take one, and its default
# action ends the process. Blocked here, they wait for the sampler's loop (sigtimedwait), in
# every thread.
signal.pthread_sigmask(
    signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2, signal.SIGRTMIN, signal.SIGRTMIN + 1}
)

from evalwatt.sampling.sampler import main  # noqa: E402

sys.exit(main())
