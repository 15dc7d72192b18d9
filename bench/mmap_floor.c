/* The floor under fastfeed's callback -> accepted: a bare C append into a shared file mapping.
 *
 * bench/mmap_floor.py builds and runs this. It does what the journal does per frame and per
 * commit, with nothing else: copy `bytes` into a MAP_SHARED mapping of a zero-filled file
 * (written in 64 KiB chunks, as fastfeed/journal/segments.py does) at `rate` appends/s (sleeping
 * between appends when they are far apart, as an event loop would; spinning the last 50 µs),
 * and time each copy. With `window_ms` > 0 a second thread commits like fastfeed's commit
 * thread: every window it drops the mapping of the whole pages behind the append position,
 * msync(MS_SYNC)s from the file start to it, maps the partial page writable again and faults
 * in the next 2 MiB. With `window_ms` 0 nothing is ever synced.
 * Prints one JSON object: the copy-time percentiles in microseconds.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SIZE (256UL << 20)
#define CHUNK (64UL << 10)
#define AHEAD (2UL << 20)

static unsigned char *base;
static volatile uint64_t off = 4096;
static volatile int stop;
static long window_ns;
static long page;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void *committer(void *unused) {
    uint64_t from = 0;
    (void)unused;
    while (!stop) {
        struct timespec w = {window_ns / 1000000000, window_ns % 1000000000};
        nanosleep(&w, NULL);
        uint64_t end = off, whole = end - end % page, a = from - from % page;
        if (whole > a) madvise(base + a, whole - a, MADV_DONTNEED);
        msync(base, end, MS_SYNC);
        madvise(base + whole, page, MADV_POPULATE_WRITE);
        if (whole + page + AHEAD < SIZE) madvise(base + whole + page, AHEAD, MADV_POPULATE_WRITE);
        from = end;
    }
    return NULL;
}

static int cmp(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: mmap_floor FILE RATE COUNT BYTES WINDOW_MS\n");
        return 2;
    }
    const char *path = argv[1];
    long rate = atol(argv[2]), count = atol(argv[3]), bytes = atol(argv[4]);
    window_ns = (long)(atof(argv[5]) * 1e6);
    page = sysconf(_SC_PAGESIZE);
    if (rate <= 0 || count <= 0 || bytes <= 0 || (uint64_t)(count * bytes) > SIZE - 2 * AHEAD) {
        fprintf(stderr, "mmap_floor: bad RATE, COUNT or BYTES\n");
        return 2;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    unsigned char *zero = calloc(1, CHUNK), *frame = malloc(bytes);
    int64_t *t = malloc(count * sizeof *t);
    if (fd < 0 || !zero || !frame || !t) {
        perror("mmap_floor");
        return 1;
    }
    for (uint64_t o = 0; o < SIZE; o += CHUNK)
        if (write(fd, zero, CHUNK) != (ssize_t)CHUNK) {
            perror("mmap_floor: zero-fill");
            return 1;
        }
    fsync(fd);
    base = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        perror("mmap_floor: mmap");
        return 1;
    }
    memset(frame, 'x', bytes);
    madvise(base, AHEAD, MADV_POPULATE_WRITE);
    pthread_t th;
    if (window_ns > 0) pthread_create(&th, NULL, committer, NULL);
    int64_t step = 1000000000 / rate, next = now_ns() + step;
    for (long i = 0; i < count; i++) {
        if (next - now_ns() > 60000) { /* sleep as an event loop would, then spin the rest */
            int64_t at = next - 50000;
            struct timespec w = {at / 1000000000, at % 1000000000};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &w, NULL);
        }
        while (now_ns() < next) {
        }
        next += step;
        int64_t s = now_ns();
        memcpy(base + off, frame, bytes);
        off += (bytes + 32 + 7) & ~7UL; /* a record: 32-byte header, 8-byte aligned */
        t[i] = now_ns() - s;
    }
    stop = 1;
    if (window_ns > 0) pthread_join(th, NULL);
    qsort(t, count, sizeof *t, cmp);
    printf("{\"count\": %ld, \"p50_us\": %.3f, \"p90_us\": %.3f, \"p99_us\": %.3f,"
           " \"p99.9_us\": %.3f, \"max_us\": %.3f}\n",
           count, t[count / 2] / 1e3, t[count * 9 / 10] / 1e3, t[count * 99 / 100] / 1e3,
           t[count * 999 / 1000] / 1e3, t[count - 1] / 1e3);
    munmap(base, SIZE);
    close(fd);
    unlink(path);
    return 0;
}
