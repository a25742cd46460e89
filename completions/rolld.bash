# bash completion for rolld(1)                                  -*- shell-script -*-
#
# Installed as share/bash-completion/completions/rolld (loaded on demand by
# the bash-completion package), or sourced by hand. Completes the commands,
# their options and the options' values, files and directories where those
# are asked for, and service names for status, rollback and retry: those are
# the services `rolld status --format json` shows for the state directory
# (--state-dir on the line, else $ROLLD_STATE_DIR, else /var/lib/rolld).
# Needs nothing but bash; jq is used when it is there.

# _rolld_services ROLLD STATE_DIR: the service names, one per line
_rolld_services()
{
    local rolld=$1 dir=$2 json
    json=$("$rolld" status --format json --state-dir "$dir" 2>/dev/null) || json=
    if [[ -n $json ]] && type -P jq >/dev/null 2>&1; then
        jq -r '.services[]?.service // empty' <<<"$json" 2>/dev/null
        return
    fi
    # without jq (or when the command fails): the status files themselves
    local f
    for f in "$dir"/status/*.yaml; do
        [[ -f $f ]] || continue
        f=${f##*/}
        printf '%s\n' "${f%.yaml}"
    done
}

# _rolld_compgen WORDLIST CUR: sets COMPREPLY to the words that start with CUR
_rolld_compgen()
{
    local IFS=$' \t\n'
    COMPREPLY=($(compgen -W "$1" -- "$2"))
}

_rolld_files()
{
    local IFS=$'\n'
    COMPREPLY=($(compgen -f -- "$1"))
    compopt -o filenames 2>/dev/null
}

_rolld_dirs()
{
    local IFS=$'\n'
    COMPREPLY=($(compgen -d -- "$1"))
    compopt -o filenames 2>/dev/null
}

_rolld()
{
    COMPREPLY=()
    local cur=${COMP_WORDS[COMP_CWORD]}
    local prev=
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    local commands="validate plan run status rollback retry sync version help"

    if ((COMP_CWORD <= 1)); then
        _rolld_compgen "$commands --help --version" "$cur"
        return 0
    fi

    local command=${COMP_WORDS[1]}
    # what the line says so far: the state dir, the repository, and the
    # positional arguments already given
    local rolld=${COMP_WORDS[0]} state_dir=${ROLLD_STATE_DIR:-/var/lib/rolld} repo=
    local positionals=0 i word value
    for ((i = 2; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        case $word in
        --watch | --no-watch | --no-status-git | --check | --help | -h) continue ;;
        --*=*) value=${word#*=}; word=${word%%=*} ;;
        -*)
            # an option with a value: the next word, or the one after an "="
            # that COMP_WORDBREAKS made a word of its own
            ((i++))
            if [[ ${COMP_WORDS[i]} == = ]] && ((i + 1 < COMP_CWORD)); then ((i++)); fi
            value=${COMP_WORDS[i]}
            ;;
        *) ((positionals++)); continue ;;
        esac
        case $word in
        --state-dir) state_dir=$value ;;
        --repo) repo=$value ;;
        esac
    done
    # ~ as typed is not expanded by bash for us
    [[ $state_dir == "~"* ]] && state_dir=$HOME${state_dir#"~"}
    [[ $rolld == "~"* ]] && rolld=$HOME${rolld#"~"}
    type -P "$rolld" >/dev/null 2>&1 || [[ -x $rolld ]] || rolld=rolld

    # --option=value: complete the value, whether "=" split the words
    # (COMP_WORDBREAKS has it by default) or not
    if [[ $cur == --*=* ]]; then
        prev=${cur%%=*}
        cur=${cur#*=}
    elif [[ $cur == = ]]; then
        cur=
    elif [[ $prev == = ]] && ((COMP_CWORD >= 2)); then
        prev=${COMP_WORDS[COMP_CWORD - 2]}
    fi

    # the values of options
    case $prev in
    --format)
        if [[ $command == plan ]]; then
            _rolld_compgen "text json markdown" "$cur"
        else
            _rolld_compgen "text json" "$cur"
        fi
        return 0
        ;;
    --log-format)
        _rolld_compgen "text json" "$cur"
        return 0
        ;;
    --config | --haproxy | --against)
        _rolld_files "$cur"
        return 0
        ;;
    --source | --state-dir | --policies | --repo)
        _rolld_dirs "$cur"
        return 0
        ;;
    --dir)
        [[ $command == plan ]] && _rolld_dirs "$cur"
        return 0
        ;;
    --base | --head | --branch)
        if [[ -n $repo ]] && type -P git >/dev/null 2>&1; then
            _rolld_compgen "HEAD $(git -C "$repo" for-each-ref --format='%(refname:short)' \
                refs/heads refs/tags refs/remotes 2>/dev/null)" "$cur"
        fi
        return 0
        ;;
    --max-surge-percent)
        _rolld_compgen "10 20 25 50 100" "$cur"
        return 0
        ;;
    --git | --status-branch | --name | --port-range | --pin-header | --debounce-ms | \
        --fetch-interval | --cpus | --memory | --gpus | --metrics-listen | --to)
        return 0 # free text
        ;;
    esac

    local options=
    case $command in
    validate)
        _rolld_files "$cur"
        return 0
        ;;
    plan)
        options="--against --format --policies --repo --base --head --dir --help"
        ;;
    run)
        options="--config --source --git --branch --dir --fetch-interval --no-watch
                 --status-branch --no-status-git --name --state-dir --policies --haproxy
                 --pin-header --port-range --debounce-ms --cpus --memory --gpus
                 --metrics-listen --log-format --check --help"
        ;;
    status)
        options="--state-dir --format --watch"
        ;;
    rollback)
        options="--state-dir --max-surge-percent --to"
        ;;
    retry | sync)
        options="--state-dir"
        ;;
    *)
        return 0
        ;;
    esac

    if [[ $cur == -* ]]; then
        _rolld_compgen "$options" "$cur"
        return 0
    fi
    case $command in
    plan)
        # NEW (a directory or file), unless --repo plans revisions
        [[ -z $repo ]] && _rolld_files "$cur"
        ;;
    status | rollback | retry)
        # one service
        if ((positionals == 0)); then
            _rolld_compgen "$(_rolld_services "$rolld" "$state_dir")" "$cur"
        fi
        ;;
    esac
    return 0
}

complete -F _rolld rolld
