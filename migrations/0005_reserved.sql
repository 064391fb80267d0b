-- Reserved for the egress lead's 0005 (issue 12). This placeholder exists only so that the
-- credential-source migration (0006) applies on this branch (versions run without gaps);
-- it is replaced by the real 0005 at merge.
SELECT 1;
