using System.Diagnostics;

namespace Rotor.Threading;

/// <summary>Work split over a <see cref="WorkerPool"/>: <see cref="Execute"/> is called once for each task index.</summary>
internal interface IParallelWork
{
    void Execute(int task);
}

/// <summary>
/// Persistent worker threads for kernels that take microseconds. Workers spin on a generation counter for a short
/// while after each job (so back-to-back GEMVs never sleep) and then block on a monitor; the calling thread runs
/// tasks too. Tasks are claimed with an atomic counter. One job at a time; concurrent callers queue on a lock.
/// </summary>
internal sealed class WorkerPool : IDisposable
{
    private static readonly long s_spinTicks = Stopwatch.Frequency / 5000; // 200 us of spinning before sleeping
    private readonly Thread[] _threads;
    private readonly object _gate = new();
    private readonly object _runLock = new();
    private IParallelWork? _work;
    private int _taskCount;
    private int _nextTask;
    private int _pending;
    private long _generation;
    private int _sleepers;
    private volatile bool _disposed;
    private Exception? _error;

    public WorkerPool(int threads)
    {
        Check.Positive(threads, nameof(threads));
        Threads = threads;
        _threads = new Thread[threads - 1];
        for (int t = 0; t < _threads.Length; t++)
        {
            _threads[t] = new Thread(WorkerLoop) { IsBackground = true, Name = $"rotor-worker-{t + 1}" };
            _threads[t].Start();
        }
    }

    /// <summary>Threads that run a job, the caller included.</summary>
    public int Threads { get; }

    /// <summary>Runs <paramref name="work"/> for tasks 0..taskCount-1 and returns when all are done.</summary>
    public void Run(IParallelWork work, int taskCount)
    {
        if (taskCount <= 0) return;
        if (_threads.Length == 0 || taskCount == 1)
        {
            for (int t = 0; t < taskCount; t++) work.Execute(t);
            return;
        }
        lock (_runLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _work = work; _taskCount = taskCount; _nextTask = 0; _error = null;
            Volatile.Write(ref _pending, _threads.Length);
            Interlocked.Increment(ref _generation);
            if (Volatile.Read(ref _sleepers) > 0) lock (_gate) Monitor.PulseAll(_gate);
            RunTasks();
            var spin = new SpinWait();
            while (Volatile.Read(ref _pending) != 0) spin.SpinOnce(sleep1Threshold: -1);
            _work = null;
            if (_error is { } e) throw new AggregateException("a parallel kernel task failed", e);
        }
    }

    private void RunTasks()
    {
        IParallelWork work = _work!;
        int t;
        while ((t = Interlocked.Increment(ref _nextTask) - 1) < _taskCount)
        {
            try { work.Execute(t); }
            catch (Exception e) { Interlocked.CompareExchange(ref _error, e, null); }
        }
    }

    private void WorkerLoop()
    {
        long seen = 0;
        while (true)
        {
            long start = Stopwatch.GetTimestamp();
            var spin = new SpinWait();
            while (Volatile.Read(ref _generation) == seen && !_disposed && Stopwatch.GetTimestamp() - start < s_spinTicks)
                spin.SpinOnce(sleep1Threshold: -1);
            if (Volatile.Read(ref _generation) == seen && !_disposed)
            {
                Interlocked.Increment(ref _sleepers);
                lock (_gate)
                    while (Volatile.Read(ref _generation) == seen && !_disposed) Monitor.Wait(_gate);
                Interlocked.Decrement(ref _sleepers);
            }
            if (_disposed) return;
            seen = Volatile.Read(ref _generation);
            RunTasks();
            Interlocked.Decrement(ref _pending);
        }
    }

    public void Dispose()
    {
        _disposed = true;
        lock (_gate) Monitor.PulseAll(_gate);
    }
}
