/*
 * Polled 16550 UART. Register offsets and bits as the PC16550D datasheet names them.
 * Transmit waits are bounded by a spin count: a missing UART must not hang the caller.
 */
#include "serial.h"
#include "port_io.h"

#define UART_THR 0      /* transmit holding (DLAB=0) */
#define UART_RBR 0      /* receive buffer (DLAB=0) */
#define UART_DLL 0      /* divisor latch low (DLAB=1) */
#define UART_IER 1
#define UART_DLM 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define LSR_DR   0x01   /* data ready */
#define LSR_THRE 0x20   /* transmit holding register empty */
#define LCR_DLAB 0x80
#define LCR_8N1  0x03
#define TX_SPIN_LIMIT 100000

static uint16_t serial_port;

void serial_init(uint16_t port)
{
    serial_port = port;
    if (!port)
        return;
    outb(port + UART_IER, 0x00);            /* polled: no interrupts */
    outb(port + UART_LCR, LCR_DLAB);
    outb(port + UART_DLL, 1);               /* 115200 baud = 115200 / 1 */
    outb(port + UART_DLM, 0);
    outb(port + UART_LCR, LCR_8N1);
    outb(port + UART_FCR, 0x07);            /* enable and clear FIFOs */
    outb(port + UART_MCR, 0x03);            /* DTR, RTS */
}

void serial_putc(char c)
{
    if (!serial_port)
        return;
    for (unsigned spin = 0; spin < TX_SPIN_LIMIT; spin++)
        if (inb(serial_port + UART_LSR) & LSR_THRE)
            break;
    outb(serial_port + UART_THR, (uint8_t)c);
}

void serial_write(const char *s, unsigned long n)
{
    for (unsigned long i = 0; i < n; i++) {
        if (s[i] == '\n')
            serial_putc('\r');
        serial_putc(s[i]);
    }
}

int serial_try_getc(void)
{
    if (!serial_port || !(inb(serial_port + UART_LSR) & LSR_DR))
        return -1;
    return inb(serial_port + UART_RBR);
}
