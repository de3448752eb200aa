/* loop.h: asyncio glue (loop.c): the monotonic clock, futures, timers, and the
   IOHandle the loop calls back through. */
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

#endif /* AGENTDB_LOOP_H */
