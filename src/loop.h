/* loop.h: asyncio glue (loop.c): the monotonic clock, futures, timers, the IOHandle
   the loop calls back through, and the descriptors the loop polls for libpq. */
#ifndef AGENTDB_LOOP_H
#define AGENTDB_LOOP_H

#include "agentdb.h"

double agentdb_monotonic(void);
PyObject *agentdb_future_new(agentdb_state *st, PyObject *loop, PyObject *owner);
/* Complete a future unless it is already done. 0 => ok, -1 => error set. */
int agentdb_future_set_result(agentdb_state *st, PyObject *fut, PyObject *value);
int agentdb_future_set_exception(agentdb_state *st, PyObject *fut, PyObject *exc);
int agentdb_future_done(agentdb_state *st, PyObject *fut);
/* loop.call_later(delay, cb, arg) -> TimerHandle (new ref) or NULL. */
PyObject *agentdb_call_later(agentdb_state *st, PyObject *loop, double delay, PyObject *cb,
                             PyObject *arg);
/* handle.cancel() and Py_CLEAR(*handle); errors are swallowed. */
void agentdb_timer_cancel(agentdb_state *st, PyObject **handle);
/* The running loop (new ref) or NULL with RuntimeError set. */
PyObject *agentdb_running_loop(agentdb_state *st);
/* A callable object that calls fn(target, arg) while target is alive; the loop
   holds it instead of the target so a dropped connection can be collected.
   Its target pointer is borrowed and cleared by agentdb_iohandle_detach. */
typedef void (*agentdb_io_fn)(PyObject *target, PyObject *arg);
PyObject *agentdb_iohandle_new(agentdb_state *st, PyObject *target, agentdb_io_fn fn);
void agentdb_iohandle_detach(PyObject *handle);

/* A libpq socket under the loop (a connection's, a cancel request's).  The loop polls a
   dup() of it that we own, never libpq's own descriptor: libpq closes its socket whenever
   a connection breaks or ends, and uvloop closes its poll handle one iteration after
   remove_reader(); if the number were reused by a new socket in between, the deferred
   close would silently unregister the new one.  Our duplicate keeps the number taken
   until after the loop has let go of it (closed on the next iteration). */
typedef struct {
    int fd;     /* our dup() of `src`, what the loop polls (-1: none) */
    int src;    /* the libpq socket it duplicates */
    int reader; /* the descriptor registered with add_reader (-1: none) */
    int writer; /* the descriptor registered with add_writer (-1: none) */
} agentdb_fdwatch;

void agentdb_fdwatch_init(agentdb_fdwatch *w);
/* Watch `sock` for reading (add_reader(cb)), once.  0 => ok, -1 => error set. */
int agentdb_fdwatch_read(agentdb_fdwatch *w, PyObject *loop, int sock, PyObject *cb);
/* Watch `sock` for writing (`on`) or stop (`!on`).  0 => ok, -1 => error set. */
int agentdb_fdwatch_write(agentdb_fdwatch *w, PyObject *loop, int sock, int on, PyObject *cb);
/* Stop watching (reader and writer) and let the duplicate go, closed on the loop's next
   iteration (at once without a usable loop).  Errors are swallowed; a raised exception
   is kept. */
void agentdb_fdwatch_stop(agentdb_state *st, agentdb_fdwatch *w, PyObject *loop);

#endif /* AGENTDB_LOOP_H */
