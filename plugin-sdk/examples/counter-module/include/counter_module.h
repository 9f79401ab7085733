/* The counter example module's descriptor, for tests that link it into a process instead of loading it. */
#ifndef COUNTER_MODULE_H
#define COUNTER_MODULE_H

struct mn_plugin_descriptor;

const struct mn_plugin_descriptor *counter_module_descriptor(void);

#endif
