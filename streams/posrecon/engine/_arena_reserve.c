/* posrecon.engine._arena_reserve: pre-faulted arenas for CPython's small-object allocator (pymalloc).

Why: while a worker catches up, its state grows by tens of MB per second, and the kernel zeroes every new page of
it in a page fault on the thread that first writes to it: the main thread, which holds the GIL and is the
worker's bottleneck. In a virtual machine such a fault can also wait for the host to back the page. This module
installs an arena allocator (PyObject_SetArenaAllocator) that hands pymalloc arenas from a reserve which a
background thread maps and populates (MADV_POPULATE_WRITE) ahead of need, without the GIL, so those faults are
taken on another core. Arenas that pymalloc frees are kept populated for reuse, up to the reserve's size; beyond
it their pages go back to the kernel (MADV_DONTNEED) and the range is kept for the thread to populate again. So
at most twice the reserve, plus one region being carved, is populated and unused. Measured effect: docs/performance.md (session 20). The Python side: posrecon/arena_reserve.py.

Locking: pymalloc calls the allocator with the GIL held; one mutex guards the stacks against the filler thread,
which never touches a Python object. Stacks are static arrays of addresses, so no arena memory is written here. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if defined(__linux__)
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels: every page is written instead */
#endif

#define REGION_BYTES ((size_t)16 << 20) /* mapped and populated at once, carved into arenas */
#define MAX_REGIONS 8192                /* 128 GiB */
#define MAX_ARENAS (MAX_REGIONS * 64)   /* arenas of at least 256 KiB */

typedef struct {
    void **items;
    Py_ssize_t count;
} Stack;

static void *ready_items[MAX_ARENAS], *reusable_items[MAX_ARENAS], *cold_items[MAX_ARENAS];
static Stack ready = {ready_items, 0};       /* populated, never used */
static Stack reusable = {reusable_items, 0}; /* freed by pymalloc, still populated */
static Stack cold = {cold_items, 0};         /* freed, pages released: the filler populates them again */
static char *regions[MAX_REGIONS];
static int region_count;

static PyObjectArenaAllocator base_allocator;
static size_t arena_bytes;   /* pymalloc's arena size, learned from its first arena request */
static size_t reserve_bytes; /* populated arenas kept ready, and freed ones kept, each up to this size */
static int installed, filler_running;
static unsigned long long served, fallbacks, reused, released, populated, map_failures;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wanted = PTHREAD_COND_INITIALIZER;

static void push(Stack *stack, void *arena) { stack->items[stack->count++] = arena; }

static void *pop(Stack *stack) { return stack->count ? stack->items[--stack->count] : NULL; }

/* The hook also gets the interpreter's data-stack chunks (16 KiB, CPython 3.11+: a new thread's first frame), often
   before the first arena; pymalloc's arenas are a power of two from 256 KiB (1 MiB since 3.10). */
static int is_arena_size(size_t size) {
    return size >= ((size_t)256 << 10) && size <= REGION_BYTES && (size & (size - 1)) == 0;
}

static Py_ssize_t target_arenas(void) { return arena_bytes ? (Py_ssize_t)(reserve_bytes / arena_bytes) : 0; }

static int in_region(const char *p) {
    for (int i = 0; i < region_count; i++)
        if (p >= regions[i] && p < regions[i] + REGION_BYTES)
            return 1;
    return 0;
}

static void populate(char *p, size_t bytes) {
    if (madvise(p, bytes, MADV_POPULATE_WRITE) == 0)
        return;
    long page = sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < bytes; i += (size_t)page)
        ((volatile char *)p)[i] = 0;
}

static int filler_has_work(void) {
    if (arena_bytes == 0 || arena_bytes > REGION_BYTES || ready.count >= target_arenas())
        return 0;
    return cold.count > 0 || region_count < MAX_REGIONS;
}

static void *fill(void *unused) {
    (void)unused;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (!filler_has_work())
            pthread_cond_wait(&wanted, &lock);
        size_t bytes = arena_bytes;
        char *arena = pop(&cold);
        if (arena != NULL) {
            pthread_mutex_unlock(&lock);
            populate(arena, bytes);
            pthread_mutex_lock(&lock);
            push(&ready, arena);
            populated++;
            continue;
        }
        pthread_mutex_unlock(&lock);
        char *region = mmap(NULL, REGION_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (region != MAP_FAILED)
            populate(region, REGION_BYTES);
        pthread_mutex_lock(&lock);
        if (region == MAP_FAILED) {
            map_failures++; /* out of address space or memory: pymalloc's own mmap will say so; wait for a request */
            pthread_cond_wait(&wanted, &lock);
            continue;
        }
        regions[region_count++] = region;
        for (size_t off = 0; off + bytes <= REGION_BYTES; off += bytes) {
            push(&ready, region + off);
            populated++;
        }
    }
    return NULL;
}

static void *reserve_alloc(void *ctx, size_t size) {
    void *arena = NULL;
    (void)ctx;
    pthread_mutex_lock(&lock);
    if (arena_bytes == 0 && is_arena_size(size))
        arena_bytes = size;
    if (size == arena_bytes) {
        arena = pop(&reusable);
        if (arena == NULL)
            arena = pop(&ready);
        if (filler_running && ready.count < target_arenas())
            pthread_cond_signal(&wanted);
    }
    if (arena != NULL)
        served++;
    else
        fallbacks++;
    pthread_mutex_unlock(&lock);
    return arena != NULL ? arena : base_allocator.alloc(base_allocator.ctx, size);
}

static void reserve_free(void *ctx, void *ptr, size_t size) {
    int ours, keep = 0;
    (void)ctx;
    pthread_mutex_lock(&lock);
    ours = size == arena_bytes && in_region(ptr);
    if (ours && reusable.count < target_arenas()) {
        push(&reusable, ptr);
        reused++;
        keep = 1;
    }
    pthread_mutex_unlock(&lock);
    if (!ours) {
        base_allocator.free(base_allocator.ctx, ptr, size);
        return;
    }
    if (keep)
        return;
    madvise(ptr, size, MADV_DONTNEED); /* the pages go back; the range stays ours */
    pthread_mutex_lock(&lock);
    push(&cold, ptr);
    released++;
    pthread_mutex_unlock(&lock);
}

/* fork: the child has the stacks but not the thread (and must not inherit a held lock) */
static void before_fork(void) { pthread_mutex_lock(&lock); }
static void after_fork_parent(void) { pthread_mutex_unlock(&lock); }
static void after_fork_child(void) {
    filler_running = 0;
    pthread_mutex_unlock(&lock);
}

static PyObject *install(PyObject *module, PyObject *arg) {
    (void)module;
    Py_ssize_t megabytes = PyLong_AsSsize_t(arg);
    if (megabytes == -1 && PyErr_Occurred())
        return NULL;
    if (megabytes <= 0 || megabytes > 65536) {
        PyErr_SetString(PyExc_ValueError, "the reserve is 1 to 65536 MiB");
        return NULL;
    }
    if (installed)
        Py_RETURN_FALSE;
    reserve_bytes = (size_t)megabytes << 20;
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&thread, &attr, fill, NULL);
    pthread_attr_destroy(&attr);
    if (err != 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
    PyObjectArenaAllocator ours = {NULL, reserve_alloc, reserve_free};
    PyObject_GetArenaAllocator(&base_allocator);
    PyObject_SetArenaAllocator(&ours);
    filler_running = installed = 1;
    Py_RETURN_TRUE;
}

static PyObject *stats(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    pthread_mutex_lock(&lock);
    PyObject *out = Py_BuildValue(
        "{sisisnsnsKsKsKsKsKsKsnsnsnsi}", "installed", installed, "filler_running", filler_running, "arena_bytes",
        (Py_ssize_t)arena_bytes, "reserve_bytes", (Py_ssize_t)reserve_bytes, "served", served, "fallbacks", fallbacks,
        "reused", reused, "released", released, "populated", populated, "map_failures", map_failures, "ready",
        ready.count, "reusable", reusable.count, "cold", cold.count, "regions", region_count);
    pthread_mutex_unlock(&lock);
    return out;
}

#else /* not Linux: nothing is installed */

static PyObject *install(PyObject *module, PyObject *arg) {
    (void)module;
    (void)arg;
    Py_RETURN_FALSE;
}

static PyObject *stats(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return Py_BuildValue("{si}", "installed", 0);
}

#endif

static PyMethodDef methods[] = {
    {"install", install, METH_O, "install(megabytes) -> bool: the reserve, once per process (False: already)"},
    {"stats", stats, METH_NOARGS, "stats() -> dict: the reserve's counters"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_arena_reserve", NULL, -1, methods};

PyMODINIT_FUNC PyInit__arena_reserve(void) { return PyModule_Create(&module_def); }
