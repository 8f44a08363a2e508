-- Chat-app installations (Slack multi-workspace OAuth): one row per platform,
-- enterprise and team, holding what the platform's OAuth flow returned (the
-- bot token among it) as JSON. An org-wide install has team_id ''.
CREATE TABLE installations (
    platform TEXT NOT NULL,
    enterprise_id TEXT NOT NULL DEFAULT '',
    team_id TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL,
    installed_at REAL NOT NULL,
    PRIMARY KEY (platform, enterprise_id, team_id)
);
