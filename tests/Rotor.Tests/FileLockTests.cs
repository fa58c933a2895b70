namespace Rotor.Tests;

/// <summary><see cref="FileLock"/>: one holder at a time, a waiter gets it when it is released, a writer that may not
/// wait fails with the lock file named. (Two real processes: tests/Rotor.Cli.Tests/HardeningTests.cs.)</summary>
public class FileLockTests
{
    [Fact]
    public async Task OneHolderAtATimeAndAWaiterGetsItOnRelease()
    {
        string target = Path.Combine(Path.GetTempPath(), $"rotor-lock-{Environment.ProcessId}-{Guid.NewGuid():N}.rix");
        try
        {
            var first = FileLock.Acquire(target, TimeSpan.Zero);
            Assert.Equal(target + ".lock", first.LockPath);
            var e = Assert.Throws<RotorException>(() => FileLock.Acquire(target, TimeSpan.FromMilliseconds(200)));
            Assert.Contains("being written by another process", e.Message);
            Assert.Contains(first.LockPath, e.Message);

            string? told = null;
            var release = Task.Run(async () => { await Task.Delay(300); first.Dispose(); });
            using (var second = FileLock.Acquire(target, TimeSpan.FromSeconds(30), why => told = why))
                Assert.NotNull(told);
            await release;
            using (FileLock.Acquire(target, TimeSpan.Zero)) { }
        }
        finally { File.Delete(target + ".lock"); }
    }

    [Fact]
    public void ALockThatCannotBeCreatedIsNamed()
    {
        string file = Path.GetTempFileName();
        try
        {
            var e = Assert.Throws<RotorException>(() => FileLock.Acquire(Path.Combine(file, "x.rix"), TimeSpan.Zero));
            Assert.Contains(file, e.Message);
        }
        finally { File.Delete(file); }
    }
}
