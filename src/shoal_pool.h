/*  =========================================================================
    shoal_pool - memory blocks handed back from the thread that frees them
    to the thread that allocates them

    A received event is allocated by a node's engine thread and freed by
    the application's thread. glibc's malloc returns such a block to the
    allocating thread's arena under that arena's lock, trims the arena's
    top and grows it again, page by page: in the fan-out benchmark that
    churn (lock futexes, madvise, page faults on regrowth) took a fifth of
    the subscriber's CPU. Event blocks go through this pool instead.

    Blocks come in four size classes, 512 B to 4 KiB; a bigger request is
    a plain malloc and its put a plain free. Any thread may put a block;
    a later get of its class, in any thread, reuses it (a thread first
    uses up the blocks it took earlier). Put back and not yet handed out
    again, whether still shared or taken by a thread, the pool keeps
    about 8 MiB (a subscriber's inbox of 10,000 small events fits); past
    that, a put frees.

    A block put twice (an event destroyed twice) is caught by the second
    put, which aborts with a message instead of corrupting the pool.
    SHOAL_POOL=0 in the environment (read once) turns the pool off, so
    that memory checkers see every block as its own malloc; builds with
    AddressSanitizer (gcc's or clang's) have it off always.

    Private to the library.
    ========================================================================= */

#ifndef SHOAL_POOL_H_INCLUDED
#define SHOAL_POOL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#define SHOAL_POOL_CLASSES 4         //  block sizes 512, 1024, 2048, 4096
#define SHOAL_POOL_SMALLEST 512      //  bytes in a class 1 block
#define SHOAL_POOL_CAP_BYTES 8388608 //  the pool keeps at most this much put back

//  A block of at least size bytes, or NULL when out of memory. *class_p
//  is set to what shoal_pool_put needs back: 1 to SHOAL_POOL_CLASSES for
//  a pooled block (which holds exactly shoal_pool_class_size bytes), 0
//  for a plain malloc.
void *shoal_pool_get (size_t size, int *class_p);

//  Gives a block from shoal_pool_get back (NULL is ignored): pooled, or
//  freed when block_class is 0 (a plain block, which is every block when
//  the pool is off) or the pool is full.
void shoal_pool_put (void *block, int block_class);

//  Aborts with a message when block (of block_class, 1 or more) is in the
//  pool already: for its owner to call before it reads the block's
//  fields, when it gives it back. A block of class 0 is not checked.
void shoal_pool_check (const void *block, int block_class);

//  Bytes in a block of the class (1 to SHOAL_POOL_CLASSES), 0 otherwise.
size_t shoal_pool_class_size (int block_class);

//  Whether gets are pooled. The first call reads SHOAL_POOL.
bool shoal_pool_enabled (void);

//  Bytes of the blocks put back and not handed out again, in every
//  class, give or take a thread's last few gets. For the tests.
size_t shoal_pool_returned (void);

#endif
