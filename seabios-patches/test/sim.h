/* Declarations hvmloader gets from hypercall.h, which the simulation leaves out. */
int hypercall_memory_op(int cmd, void *arg);
