#if canImport(Glibc)
import Glibc
#endif

/// Starts `path` with `arguments`, stdout and stderr to /dev/null (posix_spawn: Foundation.Process reaps its
/// children itself and its `waitUntilExit` can hang off the main thread). Returns the pid, or nil.
public func spawnQuietly(_ path: String, _ arguments: [String]) -> Int32? {
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    defer { posix_spawn_file_actions_destroy(&actions) }
    var pid: pid_t = 0
    guard posix_spawn(&pid, path, &actions, nil, argv, environ) == 0 else { return nil }
    return pid
}
