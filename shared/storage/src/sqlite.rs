pub struct SqliteStorage;
