"""Entry point: ``python -m evalwatt.sampling`` (see evalwatt.sampling.sampler)."""

import signal
import sys

# Before any import starts a thread (pyarrow's pools): a thread that does not block the job's
# mark signal could take it, and its default action ends the process. Blocked here, it waits
# for the sampler's loop (sigtimedwait), in every thread.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGRTMIN, signal.SIGRTMIN + 1})

from evalwatt.sampling.sampler import main  # noqa: E402

sys.exit(main())
