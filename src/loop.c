/* loop.c: asyncio glue: readiness callbacks, futures and deadlines. */
#include "agentdb.h"
/* STUB */
int agentdb_loop_setup(PyObject *module, agentdb_state *st) { (void)module; (void)st; return 0; }
