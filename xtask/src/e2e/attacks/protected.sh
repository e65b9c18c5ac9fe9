# Tries to write and create each protected path in the current directory (a rw grant).
for p in .git/hooks/pre-commit .git/config .gitmodules .envrc .vscode/settings.json .idea/workspace.xml .bashrc; do
    if (echo 'touch /tmp/pwned' >> "$p") 2>/dev/null; then echo "$p written"; else echo "$p denied"; fi
done
for d in .vscode .idea; do
    if mkdir -p "$d/x" 2>/dev/null; then echo "$d/x created"; else echo "$d/x denied"; fi
done
if echo ok > notes-from-agent.txt; then echo "control written"; else echo "control denied"; fi
