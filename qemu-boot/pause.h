/* A pause point of the test host: "@@PAUSE <where>", then wait for one byte on serial. */
#ifndef HOST_PAUSE_H
#define HOST_PAUSE_H

void host_pause(const char *where);

#endif
