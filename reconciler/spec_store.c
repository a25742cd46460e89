#include "spec_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "source_dir.h"
#include "spec.h"

#define SPEC_MAX_BYTES (1 << 20)

static void dir_of(char *out, size_t size, const char *state_dir, const char *service)
{
    snprintf(out, size, "%s/specs/%s", state_dir, service);
}

int spec_store_put(const char *state_dir, const char *service, const char *version,
                   const char *text, size_t length)
{
    char dir[4096], path[4200], tmp[4300];
    snprintf(dir, sizeof(dir), "%s/specs", state_dir);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    dir_of(dir, sizeof(dir), state_dir, service);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    snprintf(path, sizeof(path), "%s/%s.yaml", dir, version);
    if (access(path, F_OK) == 0)
        return 0;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    size_t done = 0;
    while (done < length) {
        ssize_t n = write(fd, text + done, length - done);
        if (n < 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return -e;
        }
        done += (size_t)n;
    }
    if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return -e;
    }
    return 0;
}

int spec_store_get(const char *state_dir, const char *service, const char *version, char **text,
                   size_t *length)
{
    char dir[4096], path[4200];
    dir_of(dir, sizeof(dir), state_dir, service);
    snprintf(path, sizeof(path), "%s/%s.yaml", dir, version);
    return source_read_file(path, SPEC_MAX_BYTES, text, length);
}

void spec_store_remove(const char *state_dir, const char *service)
{
    char dir[4096], path[4400];
    dir_of(dir, sizeof(dir), state_dir, service);
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

int spec_store_find_name(const char *state_dir, const char *service, const char *name,
                         char version[17])
{
    char dir[4096], path[4400];
    dir_of(dir, sizeof(dir), state_dir, service);
    DIR *d = opendir(dir);
    if (!d)
        return -ENOENT;
    time_t newest = 0;
    int r = -ENOENT;
    for (struct dirent *e; (e = readdir(d));) {
        size_t length = strlen(e->d_name);
        if (length != 16 + 5 || strcmp(e->d_name + 16, ".yaml") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        char *text = NULL;
        size_t size = 0;
        struct stat st;
        if (stat(path, &st) < 0 || source_read_file(path, SPEC_MAX_BYTES, &text, &size) < 0)
            continue;
        struct diag diag = DIAG_INIT;
        struct service_spec *spec = spec_parse(text, size, path, &diag);
        diag_clear(&diag);
        free(text);
        const char *spec_name = spec ? spec->version_name : NULL;
        if (spec_name && !strcmp(spec_name, name) && st.st_mtime >= newest) {
            newest = st.st_mtime;
            memcpy(version, e->d_name, 16);
            version[16] = 0;
            r = 0;
        }
        spec_free(spec);
    }
    closedir(d);
    return r;
}
