/* hamesh-drbdsim stand-in client: forwards argv to the simulator daemon over a unix socket and
 * reproduces the daemon's stdout, stderr and exit code. Installed as drbdadm, drbdsetup, mount, umount;
 * the tool is chosen by basename(argv[0]). Socket: $HAMESH_DRBDSIM_SOCKET, else the first line of
 * "drbdsim.socket" next to the executable. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

static int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n <= 0) return -1;
        p += n; len -= (size_t)n;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t len) {
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n <= 0) return -1;
        p += n; len -= (size_t)n;
    }
    return 0;
}

static int relay_blob(int fd, int out) {
    int32_t len;
    if (read_all(fd, &len, 4) < 0 || len < 0) return -1;
    char buf[65536];
    while (len > 0) {
        size_t chunk = len > (int32_t)sizeof buf ? sizeof buf : (size_t)len;
        if (read_all(fd, buf, chunk) < 0) return -1;
        if (write_all(out, buf, chunk) < 0) return -1;
        len -= (int32_t)chunk;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    char path[4096];
    const char *env = getenv("HAMESH_DRBDSIM_SOCKET");
    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 32);
        if (n <= 0) { fprintf(stderr, "%s: cannot locate simulator socket\n", base); return 20; }
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        strcat(exe, "/drbdsim.socket");
        FILE *f = fopen(exe, "r");
        if (!f || !fgets(path, sizeof path, f)) { fprintf(stderr, "%s: no HAMESH_DRBDSIM_SOCKET and no %s\n", base, exe); return 20; }
        fclose(f);
        path[strcspn(path, "\r\n")] = 0;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) { fprintf(stderr, "%s: socket path too long\n", base); return 20; }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        /* like drbdsetup when the kernel module is missing */
        fprintf(stderr, "Could not connect to 'drbd' generic netlink family\n");
        return 121;
    }
    int32_t count = argc;
    if (write_all(fd, &count, 4) < 0) return 20;
    for (int i = 0; i < argc; i++) {
        const char *a = i == 0 ? base : argv[i];
        int32_t len = (int32_t)strlen(a);
        if (write_all(fd, &len, 4) < 0 || write_all(fd, a, (size_t)len) < 0) return 20;
    }
    int32_t code;
    if (read_all(fd, &code, 4) < 0) return 20;
    if (relay_blob(fd, 1) < 0 || relay_blob(fd, 2) < 0) return 20;
    close(fd);
    return code;
}
