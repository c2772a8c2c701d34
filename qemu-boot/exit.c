/* Leaving the host: one place that prints the outcome and talks to isa-debug-exit. */
#include <stdarg.h>
#include "exit_codes.h"
#include "port_io.h"
#include "printf.h"
#include "serial.h"

static const char *exit_name(unsigned code)
{
    switch (code) {
    case EXIT_OK:             return "ok";
    case EXIT_PAYLOAD_FAILED: return "payload-failed";
    case EXIT_MEMORY_CHANGED: return "memory-changed";
    case EXIT_CPU_STATE:      return "cpu-state";
    case EXIT_BAD_BLOB:       return "bad-blob";
    case EXIT_NO_MODULE:      return "no-module";
    case EXIT_BAD_BOOT_INFO:  return "bad-boot-info";
    case EXIT_HOST_EXCEPTION: return "host-exception";
    case EXIT_BAD_RESERVED:   return "bad-reserved-region";
    default:                  return "unknown";
    }
}

void host_exit(unsigned code)
{
    kprintf("@@EXIT 0x%x %s\n", code, exit_name(code));
    outl(DEBUG_EXIT_PORT, code);
    for (;;)
        __asm__ volatile("cli; hlt");
}

void host_fail(unsigned code, const char *fmt, ...)
{
    char line[200];
    va_list ap;
    va_start(ap, fmt);
    kvsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    kprintf("@@ERROR %s\n", line);
    host_exit(code);
}
