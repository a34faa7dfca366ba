// A pool of threads sharing the engine's memory. JS starts each worker with its own
// instance of this module on the same memory and calls engine_thread_main(tid) from it,
// after setting the instance's __stack_pointer to a stack of its own (engine_thread_stack).
//
// A job is cut into chunks (JOB_CHUNKS a thread) that threads claim one at a time from a
// shared counter, the calling thread included, so nobody waits for a thread that is slow
// to start: a worker first joins the job (a compare-and-swap on `join`, which holds the
// job's generation, an open bit and the count of joined workers); the calling thread,
// once no chunk is left, closes the job and waits only for the workers that joined to
// finish their chunks. A worker that wakes after the close skips the job without touching
// it. Waiting spins first, then sleeps in memory.atomic.wait32; a notify is sent only when
// a thread sleeps. The spin lasts about a millisecond (SPINS loads), longer than the gaps
// between the jobs of a step: a sleep and its notify cost tens of microseconds each, and
// with a spin of about 10 us a 2-thread decode of the default model slept 176 times a token
// (benchmarks/engine_bench.py, decode sleeps/token; a step is 151 jobs).
#include "model.h"

#ifndef SPINS
#define SPINS 2000000
#endif

#ifndef JOB_CHUNKS
#define JOB_CHUNKS 2  // chunks a thread in a job: the slack that absorbs a late or slow thread
#endif
#define JOIN_OPEN 0x8000
// The generation as the high half of `join` holds it (unsigned: generations 0x8000 to
// 0xffff set the sign bit of `join`, which an arithmetic shift would spread).
#define JOIN_GENERATION(join) ((uint32_t)(join) >> 16)

static struct {
  volatile int32_t generation;
  volatile int32_t join;      // (generation & 0xffff) << 16 | JOIN_OPEN while open | workers joined
  volatile int32_t next;      // the next chunk to claim
  volatile int32_t finished;  // workers that joined and are done
  volatile int32_t stop;
  volatile int32_t ready;     // workers that entered engine_thread_main
  int32_t nthreads, chunks;
  JobFn fn;
  void *arg;
} pool = {0, 0, 0, 0, 0, 0, 1, 1, 0, 0};

int thread_count(void) { return pool.nthreads; }

// Allocates the stack of worker tid (>= 1) and returns its top (stacks grow down).
EXPORT(engine_thread_stack) uintptr_t engine_thread_stack(int bytes) {
  return (uintptr_t)mem_alloc((size_t)bytes) + (uintptr_t)bytes;
}

// Threads (the main one included) that jobs are split over; workers must be running.
EXPORT(engine_set_threads) void engine_set_threads(int n) {
  pool.nthreads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
}

// Counters for the benchmark and tests (engine_thread_stats): jobs run, waits that went
// past the spin into memory.atomic.wait32 (a sleep, woken by a notify: tens of
// microseconds), and jobs joined by workers.
static volatile int32_t stat_jobs, stat_sleeps[2];  // [0] the calling thread, [1] workers
static volatile int32_t stat_joins;
static volatile int32_t sleepers;                   // threads inside memory.atomic.wait32

static void wait_while_equal(volatile int32_t *p, int32_t value, int worker) {
  for (int i = 0; i < SPINS; i++)
    if (__atomic_load_n(p, __ATOMIC_ACQUIRE) != value) return;
  while (__atomic_load_n(p, __ATOMIC_ACQUIRE) == value) {
    __atomic_add_fetch(&stat_sleeps[worker], 1, __ATOMIC_RELAXED);
    // Counted before the wait (which rechecks *p): a notifier that changed *p and then saw
    // no sleeper cannot have been missed (both sides sequentially consistent).
    __atomic_add_fetch(&sleepers, 1, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_wait32((int32_t *)p, value, -1);
    __atomic_sub_fetch(&sleepers, 1, __ATOMIC_SEQ_CST);
  }
}

// memory.atomic.notify enters the runtime (a lock and the waiter list); skipped when no
// thread sleeps, the usual case between the jobs of a step.
static void wake(volatile int32_t *p, int count) {
  if (__atomic_load_n(&sleepers, __ATOMIC_SEQ_CST)) __builtin_wasm_memory_atomic_notify((int32_t *)p, count);
}

// out[0] jobs, out[1] sleeps of the calling thread, out[2] sleeps of the workers, out[3]
// jobs joined by workers (a worker joining the same job counts once each), since the last
// call with reset = 1; out[4] the pool's generation (jobs run since the start, mod 2^31).
EXPORT(engine_thread_stats) void engine_thread_stats(int32_t *out, int reset) {
  out[0] = stat_jobs, out[1] = stat_sleeps[0], out[2] = stat_sleeps[1], out[3] = stat_joins;
  out[4] = pool.generation;
  if (reset) stat_jobs = 0, stat_sleeps[0] = 0, stat_sleeps[1] = 0, stat_joins = 0;
}

// Claims and runs chunks of the current job until none is left.
static void run_chunks(int tid) {
  for (;;) {
    int32_t c = __atomic_fetch_add(&pool.next, 1, __ATOMIC_SEQ_CST);
    if (c >= pool.chunks) return;
    pool.fn(pool.arg, c, pool.chunks, tid);
  }
}

EXPORT(engine_thread_main) void engine_thread_main(int tid) {
  int32_t seen = __atomic_load_n(&pool.generation, __ATOMIC_ACQUIRE);
  __atomic_add_fetch(&pool.ready, 1, __ATOMIC_ACQ_REL);
  for (;;) {
    wait_while_equal(&pool.generation, seen, 1);
    seen = __atomic_load_n(&pool.generation, __ATOMIC_SEQ_CST);
    if (pool.stop) return;
    if (tid >= pool.nthreads) continue;
    int32_t j = __atomic_load_n(&pool.join, __ATOMIC_SEQ_CST);
    // Join only the job of generation `seen`, and only while it is open.
    while (JOIN_GENERATION(j) == ((uint32_t)seen & 0xffff) && (j & JOIN_OPEN)) {
      if (__atomic_compare_exchange_n(&pool.join, &j, j + 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        __atomic_add_fetch(&stat_joins, 1, __ATOMIC_RELAXED);
        run_chunks(tid);
        __atomic_add_fetch(&pool.finished, 1, __ATOMIC_SEQ_CST);
        wake(&pool.finished, 1);
        break;
      }
    }
  }
}

// Workers waiting for jobs; JS polls it after starting them and before the first job.
EXPORT(engine_threads_ready) int engine_threads_ready(void) { return __atomic_load_n(&pool.ready, __ATOMIC_ACQUIRE); }

// Ends every worker's engine_thread_main (before the JS side terminates them).
EXPORT(engine_stop_threads) void engine_stop_threads(int workers) {
  (void)workers;
  pool.stop = 1;
  __atomic_add_fetch(&pool.generation, 1, __ATOMIC_SEQ_CST);
  __builtin_wasm_memory_atomic_notify((int32_t *)&pool.generation, -1);
}

void run_job(JobFn fn, void *arg) {
  int n = pool.nthreads;
  stat_jobs++;
  if (n == 1) {
    fn(arg, 0, 1, 0);
    return;
  }
  pool.fn = fn, pool.arg = arg, pool.chunks = n * JOB_CHUNKS;
  __atomic_store_n(&pool.next, 0, __ATOMIC_SEQ_CST);
  __atomic_store_n(&pool.finished, 0, __ATOMIC_SEQ_CST);
  int32_t gen = __atomic_load_n(&pool.generation, __ATOMIC_SEQ_CST) + 1;
  __atomic_store_n(&pool.join, (int32_t)((uint32_t)(gen & 0xffff) << 16) | JOIN_OPEN, __ATOMIC_SEQ_CST);
  __atomic_store_n(&pool.generation, gen, __ATOMIC_SEQ_CST);
  wake(&pool.generation, -1);
  run_chunks(0);
  // Close the job: workers that have not joined yet will not; wait for those that did.
  int32_t joined = __atomic_fetch_and(&pool.join, ~JOIN_OPEN, __ATOMIC_SEQ_CST) & (JOIN_OPEN - 1);
  for (;;) {
    int32_t done = __atomic_load_n(&pool.finished, __ATOMIC_SEQ_CST);
    if (done == joined) break;
    wait_while_equal(&pool.finished, done, 0);
  }
}
