/*  =========================================================================
    shoal_pool - memory blocks handed back from the thread that frees them
    to the thread that allocates them

    Layout, per size class:
    - `returned`: a lock-free stack (Treiber) of blocks put back, which
      any thread pushes on, one block at a time;
    - in each thread, a private list of blocks taken from `returned`,
      which only that thread pops. A thread whose list is empty takes the
      whole of `returned` with one atomic exchange.

    Invariants:
    1. `returned` is only pushed one block at a time and only emptied
       whole, so no thread ever follows a pointer read from it that
       another thread may have changed (no ABA, no read of a block after
       it was taken).
    2. A block is on one list at a time: `returned`, one thread's private
       list, or in use by the caller that got it. A block on a list, and
       only such a block, holds S_MARK in its second word: a put that
       finds the mark is a block put twice, and aborts there.
    3. `s_stack.bytes` is the size of the blocks put back and not yet
       handed out again, on `returned` or on a private list, give or take
       the last S_SETTLE gets of each thread and class (counted locally
       first, so gets do not write the line every put writes). A put that
       would take it past SHOAL_POOL_CAP_BYTES frees its block instead.
    4. A thread's private lists are freed, and its local counts settled,
       when the thread ends (a pthread key destructor, registered by the
       first take).
    5. Whether the pool is on is decided once, before any block is
       pooled: off, every get is a malloc and every put a free.
    ========================================================================= */

#include "shoal_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  A block's first two words while it is on a list.
typedef struct s_block_t {
    struct s_block_t *next; //  next block on the same list
    uint64_t mark;          //  S_MARK while on a list, 0 once handed out
} s_block_t;

//  No live pointer is this (its top bit is set), and a block in use
//  holds the caller's data, which S_MARK is as unlikely to be as any
//  other 64-bit value.
#define S_MARK 0xd1ce5ea1f00d0b0cULL
#define S_SETTLE 64 //  gets a thread counts before it settles s_stack.bytes

typedef struct {
    s_block_t *taken[SHOAL_POOL_CLASSES]; //  this thread's blocks, per class
    long got[SHOAL_POOL_CLASSES];         //  gets from taken not yet off s_stack.bytes
    bool registered;                      //  the key destructor will free them
} s_local_t;

//  Written by every put: a cache line of their own. The getting thread,
//  on another core, reads s_setting on every get; were the two in one
//  line, each put would take that line from it (false sharing).
static struct {
    _Alignas(64) _Atomic (s_block_t *) returned[SHOAL_POOL_CLASSES]; //  put back, per class
    atomic_long bytes;                                               //  on returned (invariant 3)
} s_stack;
//  Set once, then only read.
static struct {
    _Alignas(64) atomic_bool inited; //  enabled is set: no pthread_once per get
    bool enabled;                    //  set once by s_init
    pthread_key_t key;               //  frees a thread's blocks at its end
    pthread_once_t once;
} s_setting = {.once = PTHREAD_ONCE_INIT};
static _Thread_local s_local_t s_local;

//  Takes this thread's counted gets of class index i off s_stack.bytes.
static void
s_settle (s_local_t *local, int i)
{
    if (local->got[i]) {
        atomic_fetch_sub_explicit (&s_stack.bytes,
                                   local->got[i] * (long) shoal_pool_class_size (i + 1),
                                   memory_order_relaxed);
        local->got[i] = 0;
    }
}

//  At a thread's end: frees the blocks it took and did not use.
static void
s_thread_end (void *arg)
{
    s_local_t *local = (s_local_t *) arg;
    for (int i = 0; i < SHOAL_POOL_CLASSES; i++) {
        while (local->taken[i]) {
            s_block_t *block = local->taken[i];
            local->taken[i] = block->next;
            block->mark = 0;
            free (block);
            local->got[i]++;
        }
        s_settle (local, i);
    }
    local->registered = false;
}

//  AddressSanitizer as gcc and clang each announce it.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define S_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define S_ASAN 1
#endif

static void
s_init (void)
{
#if defined(S_ASAN)
    s_setting.enabled = false;
#else
    const char *setting = getenv ("SHOAL_POOL");
    s_setting.enabled = !(setting && strcmp (setting, "0") == 0);
#endif
    //  Without a key a thread's blocks could not be freed at its end.
    if (s_setting.enabled && pthread_key_create (&s_setting.key, s_thread_end) != 0)
        s_setting.enabled = false;
    atomic_store_explicit (&s_setting.inited, true, memory_order_release);
}

bool
shoal_pool_enabled (void)
{
    if (!atomic_load_explicit (&s_setting.inited, memory_order_acquire))
        pthread_once (&s_setting.once, s_init);
    return s_setting.enabled;
}

size_t
shoal_pool_class_size (int block_class)
{
    if (block_class < 1 || block_class > SHOAL_POOL_CLASSES)
        return 0;
    return (size_t) SHOAL_POOL_SMALLEST << (block_class - 1);
}

//  The smallest class holding size bytes, 0 when none does.
static int
s_class_for (size_t size)
{
    for (int c = 1; c <= SHOAL_POOL_CLASSES; c++)
        if (size <= shoal_pool_class_size (c))
            return c;
    return 0;
}

void *
shoal_pool_get (size_t size, int *class_p)
{
    int block_class = shoal_pool_enabled () ? s_class_for (size) : 0;
    if (block_class == 0) {
        *class_p = 0;
        return malloc (size ? size : 1);
    }
    int i = block_class - 1;
    s_local_t *local = &s_local;
    if (!local->taken[i]) {
        s_settle (local, i);
        local->taken[i] =
            atomic_exchange_explicit (&s_stack.returned[i], NULL, memory_order_acquire);
        if (local->taken[i] && !local->registered)
            local->registered = pthread_setspecific (s_setting.key, local) == 0;
    }
    s_block_t *block = local->taken[i];
    if (block) {
        local->taken[i] = block->next;
        if (++local->got[i] >= S_SETTLE)
            s_settle (local, i);
    }
    else
        block = (s_block_t *) malloc (shoal_pool_class_size (block_class));
    if (block)
        block->mark = 0;
    *class_p = block ? block_class : 0;
    return block;
}

void
shoal_pool_check (const void *block, int block_class)
{
    if (block && block_class >= 1 && block_class <= SHOAL_POOL_CLASSES
        && ((const s_block_t *) block)->mark == S_MARK) {
        fprintf (stderr, "shoal: an event was destroyed twice (its memory was given back "
                         "already); run with SHOAL_POOL=0 to find where\n");
        fflush (stderr);
        abort ();
    }
}

void
shoal_pool_put (void *block, int block_class)
{
    if (!block)
        return;
    if (block_class < 1 || block_class > SHOAL_POOL_CLASSES) {
        free (block);
        return;
    }
    shoal_pool_check (block, block_class);
    s_block_t *node = (s_block_t *) block;
    long size = (long) shoal_pool_class_size (block_class);
    if (atomic_load_explicit (&s_stack.bytes, memory_order_relaxed) + size > SHOAL_POOL_CAP_BYTES) {
        free (block);
        return;
    }
    node->mark = S_MARK;
    _Atomic (s_block_t *) *returned = &s_stack.returned[block_class - 1];
    s_block_t *head = atomic_load_explicit (returned, memory_order_relaxed);
    do
        node->next = head;
    while (!atomic_compare_exchange_weak_explicit (returned, &head, node, memory_order_release,
                                                   memory_order_relaxed));
    atomic_fetch_add_explicit (&s_stack.bytes, size, memory_order_relaxed);
}

size_t
shoal_pool_returned (void)
{
    long bytes = atomic_load_explicit (&s_stack.bytes, memory_order_relaxed);
    return bytes > 0 ? (size_t) bytes : 0;
}
