/* How much a sleep costs the work after it: sleeps SLEEP_US microseconds, then times (thread
 * CPU time) a fixed piece of arithmetic and a write of one byte per cache line over 4 MiB; 50
 * rounds, the means printed. Arithmetic that takes as long after a sleep as without one, and
 * memory that takes longer, say that a sleeping process comes back to cold caches, not to a
 * slower clock (BENCHMARKS.md, "The export's own pacing").
 *
 *   gcc -O2 -o /tmp/cold-caches benches/support/cold_caches.c
 *   for s in 0 1000 10000 100000; do /tmp/cold-caches $s 100000; done
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double thread_cpu_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static volatile unsigned long sink;

static void arithmetic(int steps) {
  unsigned long x = 1;
  for (int i = 0; i < steps; i++) x = x * 6364136223846793005UL + 1442695040888963407UL;
  sink = x;
}

static char memory[4 << 20];

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s SLEEP_US ARITHMETIC_STEPS\n", argv[0]);
    return 2;
  }
  long sleep_us = atol(argv[1]);
  int steps = atoi(argv[2]);
  double compute = 0, touch = 0;
  const int rounds = 50;
  for (int r = 0; r < rounds; r++) {
    struct timespec pause = {sleep_us / 1000000, (sleep_us % 1000000) * 1000};
    if (sleep_us > 0) nanosleep(&pause, NULL);
    double a = thread_cpu_us();
    arithmetic(steps);
    double b = thread_cpu_us();
    for (size_t i = 0; i < sizeof memory; i += 64) memory[i]++;
    double c = thread_cpu_us();
    compute += b - a;
    touch += c - b;
  }
  printf("sleep %ld us: arithmetic %.1f us, 4 MiB written %.1f us\n", sleep_us, compute / rounds,
         touch / rounds);
  return 0;
}
