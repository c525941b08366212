-- The Prefect server keeps its own state in a second database beside extractflow's.
CREATE DATABASE prefect OWNER extractflow;
