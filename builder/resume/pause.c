/*
 * Pause points for the tool's independent checks (QMP pmemsave while the loader waits).
 * Off unless the loader's command line (multiboot, QEMU -append) holds the word "pause":
 * a real resume never waits. At a pause the loader prints "@@PAUSE <where>" and waits for
 * one byte on serial (suspendos/qemu/protocol.py), as the payload does (builder/core/main.c).
 *
 *   start     before the disk is touched: saved RAM is as the firmware left it
 *   verified  between the verify and the restore pass (the tool may change the disk here)
 *   after-release  the disk given back after the restore (also alone, with the word
 *             "pause=after-release": the test that no DMA reaches restored RAM afterwards)
 *   restored  every page restored, the image marked resumed, right before the return
 *   end       a refusal or a failed restore, right before the isa-debug-exit
 */
#include "resume.h"
#include "printf.h"
#include "serial.h"
#include "string.h"
#include "timer.h"

/* The tool dumps a few hundred MiB in seconds; ten minutes bounds a tool that went away. */
#define PAUSE_DEADLINE_US (600ull * 1000 * 1000)

static int enabled, after_release;

/* Whether `cmdline` holds `word` as a whole space-separated word. */
static int has_word(const char *cmdline, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = cmdline; *p; p++) {
        if (p != cmdline && p[-1] != ' ')
            continue;
        size_t i = 0;
        while (i < n && p[i] == word[i])
            i++;
        if (i == n && (!p[n] || p[n] == ' '))
            return 1;
    }
    return 0;
}

void resume_pause_init(const char *cmdline)
{
    enabled = has_word(cmdline, "pause");
    after_release = has_word(cmdline, "pause=after-release");
}

void resume_pause(const char *where)
{
    int only_release = after_release && where[0] == 'a';   /* "after-release" */
    if (!enabled && !only_release)
        return;
    while (serial_try_getc() >= 0)      /* stale input is not the tool's answer */
        ;
    kprintf("@@PAUSE %s\n", where);
    uint64_t deadline = timer_deadline_us(PAUSE_DEADLINE_US);
    while (serial_try_getc() < 0) {
        if (timer_expired(deadline)) {
            kprintf("@@PAUSE-TIMEOUT %s\n", where);
            return;
        }
    }
}
