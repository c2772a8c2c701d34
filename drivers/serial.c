/*
 * Polled 16550 UART. Register offsets and bits as the PC16550D datasheet names them.
 * Transmit waits have a deadline: a missing or wedged UART must not hang the caller.
 */
#include "serial.h"
#include "port_io.h"
#include "timer.h"

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
/* How long to wait for THRE before writing anyway. A real 16550 at 115200 baud empties its
 * 16-byte FIFO in 1.4 ms, but QEMU's keeps THRE clear while its output backend cannot take
 * more (a busy host, a slow reader), and writing into a full FIFO drops a byte (PC16550D
 * "FIFO mode": the transmitter FIFO holds 16). QEMU writes each byte to its socket on its
 * own, so a few hundred bytes fill the socket's buffer and a reader that is not scheduled
 * for a moment stalls the UART: 2 s was seen to run out on a loaded 2-core host (half of a
 * 4 KiB status line lost). So the deadline is generous, on the TSC once timer_init has
 * run; before that a spin count stands in for the clock. After one wait times out the UART
 * counts as wedged and is not waited for again until THRE shows, so a dead UART costs one
 * deadline, not one per byte. */
#define TX_DEADLINE_US 10000000
#define TX_SPIN_LIMIT  2000000
/* Between two reads of LSR, a pause that touches no device. Under QEMU every port read takes
 * the big QEMU lock, and a vCPU that reads LSR back to back can keep the thread that empties
 * the UART into its socket from ever getting that lock on a loaded host: the UART then stays
 * full for as long as we poll, the deadline runs out and bytes are lost. On hardware the gap
 * is far below one character time (87 us at 115200 baud). */
#define TX_POLL_GAP_US 20
#define TX_POLL_GAP_PAUSES 64

static uint16_t serial_port;
static int tx_wedged;

static int tx_ready(void)
{
    return inb(serial_port + UART_LSR) & LSR_THRE;
}

static void wait_tx_ready(void)
{
    if (tx_ready()) {
        if (tx_wedged)          /* written only when it changes: a plugin's log call runs */
            tx_wedged = 0;      /* here with the core's data mapped read-only */
        return;
    }
    if (tx_wedged)
        return;
    if (timer_calibrated()) {
        uint64_t deadline = timer_deadline_us(TX_DEADLINE_US);
        while (!timer_expired(deadline)) {
            if (tx_ready())
                return;
            timer_udelay(TX_POLL_GAP_US);
        }
    } else {
        for (unsigned spin = 0; spin < TX_SPIN_LIMIT; spin++) {
            if (tx_ready())
                return;
            for (unsigned p = 0; p < TX_POLL_GAP_PAUSES; p++)
                __asm__ volatile("pause");
        }
    }
    tx_wedged = 1;
}

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
    wait_tx_ready();
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
