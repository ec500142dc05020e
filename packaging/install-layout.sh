#!/bin/sh
# Install pyha's on-disk layout under DESTDIR; shared by debian/rules and pyha.spec.
#
#   packaging/install-layout.sh [--modules] SRC DESTDIR
#
# The layout (binding for both packages):
#   /usr/share/pyha/{ocf_lib,agents,fence}   the library and the agent modules, a
#                                            private tree (as fence-agents keeps
#                                            fencing.py in /usr/share/fence)
#   /usr/share/pyha/metadata/*.xml           pre-generated metadata
#   /usr/lib/ocf/resource.d/pyha/<Type>      -> /usr/share/pyha/agents/<Type>
#   /usr/share/cluster/<Type>.sh             -> the same, for agents that declare an
#                                            rgmanager primary (rgmanager loads every
#                                            executable there; the launcher serves the
#                                            rgmanager metadata for a .sh name)
#   /usr/sbin/fence_na, /usr/sbin/fence_pcmk -> /usr/share/pyha/fence/...  (Debian's
#                                            fence-agents has neither)
#   /usr/share/pyha/fence-alternatives       every other fence agent (fence_ipmilan, its
#                                            aliases, fence_ilo_mp, ...): the package
#                                            scripts register them with update-alternatives
#   /usr/share/pyha/upstream/<name>          for each of those, the launcher of the other
#                                            package's agent that the deb diverts into
#                                            /usr/share/pyha/diverted (see debian/pyha.postinst)
#   /usr/bin/pyha-tester, pyha-metadata, pyha-fence-node
#   manpages: ocf_pyha_<Type>.7, fence_<x>.8 (pyha-fence_<x>.8 for the alternatives),
#             pyha-tester.1, pyha-metadata.1, pyha-fence-node.1
#
# The launchers find the library through realpath, so the symlinks need nothing else.
# --modules also copies the Python modules (the deb gets them from pybuild instead).
set -eu
modules=0
if [ "${1:-}" = "--modules" ]; then modules=1; shift; fi
SRC=$(cd "$1" && pwd)
DEST=$2
SHARE=/usr/share/pyha
DIRECT_FENCE="fence_na fence_pcmk"   # names no other package ships

mkdir -p "$DEST$SHARE/agents" "$DEST$SHARE/fence" "$DEST$SHARE/metadata" \
    "$DEST$SHARE/diverted" "$DEST$SHARE/upstream" "$DEST/usr/lib/ocf/resource.d/pyha" \
    "$DEST/usr/sbin" \
    "$DEST/usr/bin" "$DEST/usr/share/man/man1" "$DEST/usr/share/man/man7" \
    "$DEST/usr/share/man/man8"

if [ "$modules" = 1 ]; then
    for pkg in ocf_lib agents fence; do
        mkdir -p "$DEST$SHARE/$pkg"
        install -m 0644 "$SRC/$pkg"/*.py "$DEST$SHARE/$pkg/"
    done
fi

install -m 0644 "$SRC"/metadata/*.xml "$SRC"/metadata/*.rgmanager "$DEST$SHARE/metadata/"

# Resource agents: every executable in agents/ without a dot or leading underscore.
for path in "$SRC"/agents/*; do
    name=$(basename "$path")
    case "$name" in *.*|_*) continue ;; esac
    [ -f "$path" ] && [ -x "$path" ] || continue
    install -m 0755 "$path" "$DEST$SHARE/agents/$name"
    ln -sfr "$DEST$SHARE/agents/$name" "$DEST/usr/lib/ocf/resource.d/pyha/$name"
    if [ -f "$SRC/metadata/$name.rgmanager" ]; then
        mkdir -p "$DEST/usr/share/cluster"
        ln -sfr "$DEST$SHARE/agents/$name" "$DEST/usr/share/cluster/$name.sh"
    fi
done

# The alternative that stands for the other package's agent.  Its file can
# vanish (that package removed) before dpkg runs pyha's trigger, which then
# unregisters it and auto mode picks pyha's agent; until then the launcher
# makes the same choice, so /usr/sbin/<name> never dangles.
upstream_launcher() {
    cat <<EOF
#!/bin/sh
if [ -x $SHARE/diverted/$1 ]; then
    exec $SHARE/diverted/$1 "\$@"
fi
echo "$1: the diverted agent $SHARE/diverted/$1 is gone; running pyha's" >&2
exec $SHARE/fence/$1 "\$@"
EOF
}

# Fence agents (and their alias executables).
: > "$DEST$SHARE/fence-alternatives"
for path in "$SRC"/fence/fence_*; do
    name=$(basename "$path")
    case "$name" in *.*) continue ;; esac
    [ -f "$path" ] && [ -x "$path" ] || continue
    install -m 0755 "$path" "$DEST$SHARE/fence/$name"
    case " $DIRECT_FENCE " in
        *" $name "*) ln -sfr "$DEST$SHARE/fence/$name" "$DEST/usr/sbin/$name" ;;
        *) echo "$name" >> "$DEST$SHARE/fence-alternatives"
           upstream_launcher "$name" > "$DEST$SHARE/upstream/$name"
           chmod 0755 "$DEST$SHARE/upstream/$name" ;;
    esac
done

# Command-line tools: tiny wrappers that put the private tree on sys.path.
for spec in pyha-tester:ocf_lib.tester pyha-metadata:ocf_lib.gen \
            pyha-fence-node:ocf_lib.fencenode; do
    cmd=${spec%%:*}
    module=${spec#*:}
    [ -f "$SRC/$(echo "$module" | tr . /).py" ] || continue
    cat > "$DEST/usr/bin/$cmd" <<EOF
#!/usr/bin/python3
import sys

sys.path.insert(0, "$SHARE")
from $module import main  # noqa: E402

sys.exit(main())
EOF
    chmod 0755 "$DEST/usr/bin/$cmd"
done

# Manpages, generated from the declarations.
PYTHONPATH="$SRC" python3 "$SRC/packaging/gen-manpages.py" "$DEST/usr/share/man" \
    "$DEST$SHARE/fence-alternatives"
