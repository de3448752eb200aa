/* pool.c: Pool, idle connections, size/overflow accounting and FIFO waiters. */
#include "agentdb.h"
/* STUB */
int agentdb_pool_setup(PyObject *module, agentdb_state *st) { (void)module; (void)st; return 0; }
