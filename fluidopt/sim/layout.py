"""Indices into the simulator's state arrays, shared by the kernel and the Python driver.

The simulator keeps its state in a few flat numpy arrays so that the hot loop compiles with
numba; these constants name the rows and entries.  They are module globals, which numba treats
as compile-time constants.
"""

# Per-slot integer fields (rows of ``slot_i``).
I_CLASS = 0  # class index
I_PREFILL = 1  # prompt length l
I_DECODE = 2  # output length l'
I_STAGE = 3  # next stage to run: 0 = prefill, s >= 1 = decode step s
I_PREFILL_DONE = 4  # prompt tokens (re)computed so far in the current prefill
I_TARGET = 5  # tokens to (re)prefill: l, or l + generated tokens for a recompute victim
I_RESUME = 6  # stage to continue with once the prefill is done
I_ADMIT = 7  # admission sequence number (for last-in-first-out eviction)
I_STATUS = 8  # 0 free, 1 waiting (not resident), 2 resident
I_CHARGE = 9  # KV tokens charged to the slot (0 when not resident)
I_REQUEST = 10  # global request id (arrival order)
I_EVICTIONS = 11  # times this request was evicted
I_MAX_NEW = 12  # max_new_tokens the client sent (an upper bound on the output; SGLang's reservation)
I_CACHE_MARK = 13  # recompute victim: free-queue number just past its freed blocks (prefix caching)
I_CACHE_BLOCKS = 14  # recompute victim: full blocks of computed KV it freed (0: nothing cached); at arrival,
# the whole blocks of its prompt already in the prefix cache (a replayed run's hits between requests)
N_INT_FIELDS = 15
NEVER_EVICTED = 2**62  # I_CACHE_MARK of blocks cached at arrival: never behind the free queue's head

# Per-slot float fields (rows of ``slot_f``).
F_ARRIVAL = 0
F_FIRST_TOKEN = 1  # end of the first prefill iteration (NaN before)
F_LAST_TOKEN = 2  # time of the latest token (for time between tokens)
N_FLOAT_FIELDS = 3

STATUS_FREE = 0
STATUS_WAITING = 1
STATUS_RESIDENT = 2
STATUS_FINISHING = 3  # completed, its last token in flight: holds its KV and its running slot until released
STATUS_RELEASED = 4  # a finishing request preempted: its KV freed, its slot freed with the finishing ones

# Integer scalars (entries of ``scal_i``).
S_NFREE = 0
S_NRES = 1
S_ADMIT_COUNTER = 2
S_ARRIVED = 3  # arrivals processed (all)
S_ARRIVED_MEASURED = 4  # arrivals at or after the warm-up
S_COMPLETED = 5
S_COMPLETED_MEASURED = 6  # completions of measured requests
S_COMPLETED_WINDOW = 7  # completions inside the measurement window
S_TOKENS_WINDOW = 8  # decode tokens of completions inside the window
S_ITERATIONS = 9
S_EVICTIONS = 10
S_WASTED_TOKENS = 11  # decode tokens lost to restarts
S_RECOMPUTED_TOKENS = 12  # tokens re-prefilled after recompute evictions
S_OVERFLOW_ITERATIONS = 13  # batches run with resident memory above C
S_PEAK_MEMORY = 14
S_MEMORY = 15  # resident memory now (tokens, block-rounded)
S_IN_SYSTEM = 16
S_WAITING = 17
S_LOG_COUNT = 18  # entries written to the completion log this call
S_SERIES_COUNT = 19  # entries written to the time-series log this call
S_MAX_WAITING = 20
S_ARRIVALS_DONE = 21  # 1 once the final chunk of arrivals is consumed
S_PREFILL_ITERATIONS = 22
S_CONSUMED = 23  # arrivals of the current chunk consumed by the last kernel call
S_STAGE_EXCESS = 24  # WAIT: max over time of (residents of class j at a decode stage) - n_j
S_ARRIVED_TOKENS = 25  # decode tokens of the arrivals inside the measurement window
S_PEAK_RUNNING = 26  # most requests holding KV at once (vLLM's / SGLang's running requests)
S_PREEMPT_STEPS = 27  # steps in which the policy preempted (or retracted) at least one request
S_BLOCKS_FREED = 28  # KV blocks freed so far (free-queue numbers: initial blocks 0..N-1, then N + this)
S_BLOCKS_ALLOCATED = 29  # KV blocks taken from the free queue so far (its head: numbers below are reused)
S_PREFIX_HIT_TOKENS = 30  # re-prefill tokens served from the prefix cache instead of recomputed
S_FREE_UNHASHED = 31  # free KV blocks at the free queue's head holding no full block of KV (reused first)
N_INT_SCALARS = 32

# Float scalars (entries of ``scal_f``).
T_NOW = 0
T_LAST = 1  # last time the areas were integrated
T_MEMORY_AREA = 2
T_WAITING_AREA = 3
T_BUSY = 4
T_LATENCY_SUM = 5
T_TTFT_SUM = 6
T_TBT_SUM = 7
T_TBT_COUNT = 8
T_LATENCY_MAX = 9
T_RESIDENT_AREA = 10
T_TPOT_SUM = 11  # sum over measured completions with >= 2 output tokens of (E2E - TTFT) / (output - 1)
T_TPOT_COUNT = 12
T_STEP_START = 13  # start of the latest step (an asynchronous scheduler planned the next one then)
T_STEP_END = 14  # its end
N_FLOAT_SCALARS = 15

# Run configuration (entries of ``cfg_i`` / ``cfg_f``).  Policy knobs are not here: each policy
# packs its own parameter arrays (``fluidopt.sim.policies``), whose layout its module names.
C_SELECTOR = 0  # index of the policy's selection function in fluidopt.sim.policies.SELECTORS
C_BLOCK = 1  # KV block size in tokens
C_EVICTION = 2  # 0 restart, 1 recompute
C_DRAIN = 3  # keep serving after the last arrival until empty
C_RECORD = 4  # write the completion log
C_SERIES = 5  # write the time-series log
C_CAPACITY = 6  # KV capacity C in tokens
C_TIMING = 7  # index of the profile's timing kind in fluidopt.timing.registry (its step function's slot)
C_FIRST_TOKEN_PREFILL = 8  # 1: the first output token comes out of the prefill iteration (Vidur, engines)
C_MEASURE_LO = 9  # statistics cover requests with id in [C_MEASURE_LO, C_MEASURE_HI) (and arrival >= warm-up)
C_MEASURE_HI = 10
C_PER_CLASS_QUEUES = 11  # 1: one waiting queue per class (WAIT), 0: one FCFS queue
C_ENGINE_TOKENS = 12  # 1: engine token accounting (the selector allocates KV; a re-prefill emits a token)
C_HOLD_FINISHED = 13  # 1: a completed request holds KV and slot until the step after next is planned (async)
N_CFG_INT = 14

CF_WATERMARK = 0  # fraction of blocks kept free at admission (paged policies)
CF_WARMUP = 1  # measurement starts here (s)
CF_WINDOW_END = 2  # measurement window end (s)
CF_DRAIN_TIMEOUT = 3  # draining stops this long after the window end (thrashing guard)
N_CFG_FLOAT = 4

EVICTION_IDS = {"restart": 0, "recompute": 1}

# Latency histograms: log10-spaced bins from 1e-6 s to 1e6 s.
HIST_MIN_LOG10 = -6.0
HIST_BINS_PER_DECADE = 200
HIST_BINS = 12 * HIST_BINS_PER_DECADE
H_LATENCY = 0
H_TTFT = 1
H_TBT = 2
H_TPOT = 3
N_HISTOGRAMS = 4

# Kernel return codes.
RC_DONE = 0
RC_NEED_ARRIVALS = 1
RC_SERIES_FULL = 2
RC_NEED_SLOTS = 3

# Columns of the per-iteration series log.
SERIES_COLUMNS = (
    "start_s",
    "end_s",
    "memory_tokens",
    "waiting",
    "batch_size",
    "completions",
    "prefill_tokens",
    "running",
    "admitted",
    "preempted",
    "scheduled_tokens",
)


def fingerprint() -> int:
    """A number that changes whenever a size or index above changes (checked against the kernel's cache)."""
    values = [v for k, v in sorted(globals().items()) if k.isupper() and isinstance(v, (int, float))]
    return hash(tuple(values)) % (2**61)


N_SERIES_COLUMNS = len(SERIES_COLUMNS)
