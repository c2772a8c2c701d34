/* A tiny printf to the serial console: %s %c %d %i %u %x %X %p, flags '0' and '-',
 * width, and the l / ll / z length modifiers. */
#ifndef SOS_PRINTF_H
#define SOS_PRINTF_H
#include <stdarg.h>
#include <stddef.h>

int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int ksnprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
