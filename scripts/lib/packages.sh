# Shared by scripts/test.sh and scripts/demo.sh (sourced, not run): installs the system packages rsinit needs when
# they are missing, and finds free loopback ports.

# Runs a command as root (directly when already root, else through sudo).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: '$*' needs root and sudo is not installed" >&2
        echo "fix: run as root, or install these packages first: ${missing_packages[*]:-}" >&2
        return 1
    fi
}

# ensure_packages <package>...: installs with apt-get those that dpkg does not list as installed.
ensure_packages() {
    missing_packages=()
    local package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
            missing_packages+=("$package")
    done
    if [ "${#missing_packages[@]}" -gt 0 ]; then
        echo "==> installing: ${missing_packages[*]}"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
            "${missing_packages[@]}" >/dev/null
    fi
}

# The packages every build needs (libmongoc/libbson 1.x through pkg-config) and the Redis the tests and demo run.
rsinit_packages=(libmongoc-dev libbson-dev pkg-config redis-server openssl)

port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: prints a port in 20000-49999 that nothing listens on (loopback).
free_port() {
    local candidate
    for _ in $(seq 1 50); do
        candidate=$((20000 + RANDOM % 30000))
        if port_is_free "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: no free loopback port found" >&2
    return 1
}
