/*
 * The core's side of plugins (formats/plugin.py has the ABI): calls the hooks of the plugins
 * the builder linked in (sos_plugin_table), each under its own page-table view and on its own
 * stack, accumulates the time spent in them in handoff.draw_tsc, and tells the fault handler
 * which plugin was running.
 */
#ifndef SOS_PLUGIN_HOST_H
#define SOS_PLUGIN_HOST_H
#include <stdint.h>

/* Check the descriptors and call every plugin's init hook. No plugins: does nothing. */
void plugin_host_init(void);

/* Call the progress hooks when done * 100 / total (or the phase) changed since last time. */
void plugin_host_progress(uint64_t done, uint64_t total, uint32_t phase);

/* Call the finish hooks; only the first call of a run does anything. The writer calls it
 * before the image header goes out, so that a plugin fault still leaves no image. */
void plugin_host_finish(uint32_t status);

/* For the fault handler, first thing: if a plugin hook was running, switch back to the
 * core's page tables and return the plugin's name; else NULL (and change nothing). */
const char *plugin_host_fault_enter(void);

#endif
