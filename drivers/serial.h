/* Polled 16550 UART (the PC's COM ports). No interrupts: every call returns promptly. */
#ifndef SOS_SERIAL_H
#define SOS_SERIAL_H
#include <stdint.h>

#define SERIAL_COM1 0x3f8

void serial_init(uint16_t port);    /* 115200 8N1, FIFOs on; port 0 disables output */
void serial_putc(char c);
void serial_write(const char *s, unsigned long n);
int serial_try_getc(void);          /* a received byte, or -1 when none is waiting */

#endif
