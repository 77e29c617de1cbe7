"""Microsoft Teams: the Teams SDK's App at POST /api/messages (handlers.teams.app), the checklist
in dialogs and cards (turns, cards, parse), delivery through the Bot Connector (platform), Graph
for installs, phone pushes and the directory (graph), and the app package (package).

Nothing is imported here: `consentbot teams package` must not load the Teams SDK.
"""
