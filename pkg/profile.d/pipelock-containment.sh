# pipelock-containment: put the agent tool wrappers first on operators' PATH,
# so typing `claude` runs it contained, as the agent user, through cc-launch.
case ":${PATH}:" in
    *:/var/lib/pipelock-containment/wrappers:*) ;;
    *) PATH="/var/lib/pipelock-containment/wrappers:${PATH}" ;;
esac
export PATH
